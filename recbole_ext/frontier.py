"""Trade-off frontiers: sweep one configuration knob, plot one test metric against another (layer 5).

    python -m recbole_ext.frontier --model=BPR --dataset=ml-100k --knob=cp_lambda --values=0,0.25,0.5,0.75 \\
        [--checkpoint=saved/BPR-....pth] [--seeds=2020,2021] [--seed_key=seed] [--x=jsd@10 --y=ndcg@10] \\
        [--config_files="a.yaml b.yaml"] [--out_dir=saved/frontier] [--key=value ...]

Each point (knob value × seed) is one run:

* without ``--checkpoint`` the model is trained with the knob's value (:func:`recbole_ext.quick_start.run_recbole`);
* with ``--checkpoint`` and a post-training trainer (``--trainer=CaliTune`` and its ``--epochs``, say, for
  ``calitune_lambda``) the run starts from that backbone (``pretrained_model_file``);
* with ``--checkpoint`` and no trainer the knob is an evaluation-only setting (``cp_lambda``, ...): the
  checkpoint's weights are evaluated as they are (``epochs`` 0), after its dataset and split are checked to be
  this run's; a ``cp_*`` knob switches ``rerank: cp`` on.

Writes ``<out_dir>/frontier-<knob>.csv`` (one row per run: knob value, seed, x, y, every test metric, summary
path), ``frontier-<knob>-agg.csv`` (one row per value: mean and 95 % interval of x and y — Student t over the
seeds when there are two or more, else over the test users of the run when its per-user values were saved,
else no interval, said so in ``interval``; ``pareto``) and ``frontier-<knob>.png``. A point is Pareto-optimal
when no other value is at least as good in both metrics and better in one; the direction of each metric is
RecBole's (``recbole.evaluator.register.smaller_metrics``: ``jsd`` smaller is better, ``ndcg`` bigger).
See docs/seeds-and-frontiers.md.
"""

import argparse
import csv
import io
import os
import re
import sys

import numpy as np

from recbole_ext import checkpoint as ckpt
from recbole_ext.config import Config
from recbole_ext.errors import CheckpointError, ConfigError
from recbole_ext.evaluator.register import smaller_is_better
from recbole_ext.io import atomic_write, atomic_write_text
from recbole_ext.parsing import parse_value
from recbole_ext.quick_start import (check_output_dirs, per_user_path, plain_metrics, run_recbole, setup_run,
                                     summary_path, write_per_user, write_summary)
from recbole_ext.seeds import parse_seeds
from recbole_ext.stats import mean_ci

LEVEL = 0.95
#: knobs read only at evaluation time: over a checkpoint they need no training
EVAL_ONLY_PREFIXES = ("cp_",)
EVAL_ONLY_KEYS = frozenset({"rerank"})
_KNOB = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ------------------------------------------------------------------------------------------------
# pure helpers
# ------------------------------------------------------------------------------------------------
def pareto_front(x, y, x_smaller=False, y_smaller=False):
    """Boolean mask of the Pareto-optimal points of ``(x[i], y[i])``: no other point is at least as good in
    both and strictly better in one (equal points are all optimal). ``*_smaller``: that metric is better
    when smaller."""
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"pareto_front needs x and y of one length, got {a.size} and {b.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("pareto_front: x and y must be finite numbers")
    a = -a if x_smaller else a  # from here on bigger is better in both
    b = -b if y_smaller else b
    # [i, j]: point j is at least as good as point i in both metrics, and better in one
    no_worse = (a[None, :] >= a[:, None]) & (b[None, :] >= b[:, None])
    better = (a[None, :] > a[:, None]) | (b[None, :] > b[:, None])
    return ~(no_worse & better).any(axis=1)


def parse_values(values):
    """``"0,0.25,0.5"`` (or a list) as a list of distinct configuration values (numbers, words, literals); values
    that are lists themselves (MoRec's ``morec_objective_weights``) are separated by ``;``:
    ``"[0.1,0.1,0.1,0.7];[0.3,0.3,0.3,0.1]"``."""
    if isinstance(values, str):
        items = [v.strip() for v in values.split(";" if ";" in values else ",")]
    else:
        items = list(values or [])
    if not items or any(v == "" for v in items):
        raise ConfigError(f"--values needs a comma-separated list of knob values, e.g. --values=0,0.25,0.5 (lists: "
                          f"separated by ';'); got {values!r}")
    parsed = [parse_value(v) for v in items]
    if len({repr(v) for v in parsed}) != len(parsed):
        raise ConfigError(f"--values repeats a value: {values!r}")
    return parsed


def interval(values):
    """``(mean, lo, hi, n)`` of a sample: the Student-t ``LEVEL`` interval of its mean (lo/hi ``None`` below 2
    values)."""
    ci = mean_ci(values, LEVEL)
    if ci.n < 2:
        return ci.mean, None, None, ci.n
    return ci.mean, ci.lo, ci.hi, ci.n


def per_user_interval(path, metric):
    """``(mean, lo, hi, n)`` over the users of a per-user CSV (column ``metric``), or ``None`` when the file or
    column is missing."""
    import pandas as pd

    if not path or not os.path.isfile(path):
        return None
    frame = pd.read_csv(path)
    if metric not in frame.columns:
        return None
    return interval(frame[metric].to_numpy(dtype=np.float64))


def aggregate(runs, x, y):
    """One row per knob value from the runs of that value (dicts with ``x``/``y`` values, ``per_user``):
    mean and 95 % interval of x and y over the seeds (≥ 2 runs), else over the run's users, else none."""
    xs = [r[x] for r in runs]
    ys = [r[y] for r in runs]
    if len(runs) >= 2:
        (xm, xlo, xhi, n), (ym, ylo, yhi, _) = interval(xs), interval(ys)
        how = f"t over {n} seeds"
    else:
        px = per_user_interval(runs[0].get("per_user"), x)
        py = per_user_interval(runs[0].get("per_user"), y)
        xm, ym = xs[0], ys[0]
        if px is None or py is None or px[1] is None or py[1] is None:
            xlo = xhi = ylo = yhi = None
            how = "none: one seed and no per-user values (save_per_user) for this run"
        else:
            # the mean of the per-user values (the run's reported test value to its printed digits) and its
            # t-interval over the test users
            (xm, xlo, xhi, _), (ym, ylo, yhi, _) = px, py
            how = f"t over {px[3]} test users (one seed)"
    return {f"{x}_mean": xm, f"{x}_lo": xlo, f"{x}_hi": xhi, f"{y}_mean": ym, f"{y}_lo": ylo, f"{y}_hi": yhi,
            "n_seeds": len(runs), "interval": how}


# ------------------------------------------------------------------------------------------------
# runs
# ------------------------------------------------------------------------------------------------
def is_eval_only(knob):
    return knob in EVAL_ONLY_KEYS or knob.startswith(EVAL_ONLY_PREFIXES)


def _cmd_keys(cmd_args):
    return {str(a).split("=", 1)[0].lstrip("-"): a for a in cmd_args}


def evaluate_checkpoint_run(model, dataset, checkpoint_file, config_file_list=None, config_dict=None, cmd_args=()):
    """Evaluate ``checkpoint_file``'s weights as they are on this configuration's test split (the knob
    under study set in ``config_dict``), and write the usual JSON summary. The checkpoint must hold
    ``model`` trained on this dataset and split (:func:`recbole_ext.checkpoint.check_same_data`)."""
    saved = ckpt.load_checkpoint(checkpoint_file)
    if str(saved["meta"].get("model", "")).lower() != str(model).lower():
        raise CheckpointError(
            f"{checkpoint_file} holds a '{saved['meta'].get('model')}' model, not '{model}': "
            f"pass --model={saved['meta'].get('model')}"
        )
    config = Config(model, dataset, config_file_list, dict(config_dict or {}), list(cmd_args))
    check_output_dirs(config)
    run = setup_run(config, checkpoint=saved, checkpoint_file=checkpoint_file)
    run.trainer.collect_train_data(run.train_data)
    test = run.trainer.evaluate(run.test_data, load_best_model=False, show_progress=config["show_progress"])
    result = {
        "model": config["model"], "dataset": config["dataset"], "best_valid_score": None,
        "valid_score_bigger": config["valid_metric_bigger"], "best_valid_result": None,
        "test_result": plain_metrics(test),
        "evaluated_checkpoint": os.path.abspath(checkpoint_file), "checkpoint": None,
    }
    path = summary_path(config)
    if config["save_per_user"]:  # the test evaluation's per-user values, as run_recbole writes them
        result.update(write_per_user(run, run.trainer, test, per_user_path(path)))
    result["summary_path"] = write_summary(config, dict(result, config=ckpt.plain_config(config)), path)
    return result


def _point_runner(model, dataset, checkpoint, config_file_list, config_dict, cmd_args):
    """``(run(config_dict) -> result, evaluation_only)`` after checking the combination of options."""
    keys = _cmd_keys(cmd_args)
    base = dict(config_dict or {})
    if checkpoint is None:
        return (lambda cd: run_recbole(model, dataset, config_file_list, cd, cmd_args=list(cmd_args))), False
    if not os.path.isfile(checkpoint):
        raise ConfigError(f"--checkpoint: no such file {checkpoint}")
    base["pretrained_model_file"] = os.path.abspath(checkpoint)
    probe = Config(model, dataset, config_file_list, base, list(cmd_args))
    if probe["trainer"]:  # a post-training trainer (CaliTune, ...) starts from the checkpoint and trains
        return (lambda cd: run_recbole(model, dataset, config_file_list, cd, cmd_args=list(cmd_args))), False
    if "epochs" in keys and int(probe["epochs"]) != 0:
        raise ConfigError(
            f"{keys['epochs']} with --checkpoint and no --trainer: the checkpoint is evaluated as it is (epochs 0); "
            "a post-training knob needs its trainer, e.g. --trainer=CaliTune --epochs=20"
        )
    path = os.path.abspath(checkpoint)
    return (lambda cd: evaluate_checkpoint_run(model, dataset, path, config_file_list, cd, cmd_args)), True


def run_frontier(model, dataset, knob, values, checkpoint=None, seeds=None, x="jsd@10", y="ndcg@10",
                 config_file_list=None, config_dict=None, cmd_args=None, out_dir="saved/frontier", seed_key="seed",
                 plot=True):
    """Sweep ``knob`` over ``values`` (× ``seeds``, set as config key ``seed_key``), one run each; write the
    CSVs and the plot (see the module docstring). Returns ``{"rows", "points", "csv", "agg_csv", "png"}``."""
    if not isinstance(knob, str) or not _KNOB.match(knob):
        raise ConfigError(f"--knob must be a configuration key such as cp_lambda, got {knob!r}")
    values = parse_values(values)
    seeds = parse_seeds(seeds) if seeds not in (None, "", []) else None
    cmd_args = list(cmd_args or [])
    keys = _cmd_keys(cmd_args)
    if knob in keys or knob in (config_dict or {}):
        raise ConfigError(f"--{knob} is the swept knob: give its values with --values, not as a fixed setting")
    if seeds and (seed_key in keys or seed_key in (config_dict or {})):
        raise ConfigError(f"--{seed_key} conflicts with --seeds (which set {seed_key} per run): drop it")
    for metric in (x, y):
        if not isinstance(metric, str) or not metric.strip():
            raise ConfigError(f"--x / --y name test metrics as RecBole prints them (e.g. ndcg@10), got {metric!r}")
    if x == y:
        raise ConfigError(f"--x and --y are both {x}: choose two metrics")
    if seeds and checkpoint and seed_key == "seed":
        raise ConfigError(
            "--seeds with --checkpoint: 'seed' also draws the data split, and the checkpoint fixes its split; "
            "repeat a post-training run over its own seed instead (e.g. --seed_key=calitune_seed)"
        )
    base = dict(config_dict or {})
    runner, eval_only = _point_runner(model, dataset, checkpoint, config_file_list, base, cmd_args)
    if eval_only:
        if seeds:
            raise ConfigError("--seeds with an evaluation-only sweep of one checkpoint: every seed would give the "
                              "same numbers (evaluation is deterministic); drop --seeds")
        base["epochs"] = 0
        if knob.startswith("cp_") and "rerank" not in keys and not base.get("rerank"):
            base["rerank"] = "cp"
    if checkpoint:
        base["pretrained_model_file"] = os.path.abspath(checkpoint)
    base.setdefault("save_per_user", True)

    rows = []
    for value in values:
        for seed in seeds or [None]:
            cd = dict(base, **{knob: value})
            if seed is not None:
                cd[seed_key] = seed
            result = runner(cd)
            test = result.get("test_result") or {}
            missing = [m for m in (x, y) if test.get(m) is None]
            if missing:
                raise ConfigError(
                    f"metric {', '.join(missing)} not in the test results ({', '.join(test) or 'none'}): "
                    "add the metric (--metrics=...) or choose --x / --y among these"
                )
            used_seed = seed if seed is not None else _summary_value(result, seed_key)
            rows.append({"knob": knob, "value": value, "seed": used_seed, "x": x, "y": y,
                         x: test[x], y: test[y], "test": test, "summary_path": _abspath(result.get("summary_path")),
                         "per_user": _per_user_path(result)})
    points = []
    for value in values:
        runs = [r for r in rows if repr(r["value"]) == repr(value)]
        points.append({"value": value, **aggregate(runs, x, y)})
    front = pareto_front([p[f"{x}_mean"] for p in points], [p[f"{y}_mean"] for p in points],
                         smaller_is_better(x), smaller_is_better(y))
    for point, optimal in zip(points, front):
        point["pareto"] = bool(optimal)
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, f"frontier-{knob}.csv")
    agg_path = os.path.join(out_dir, f"frontier-{knob}-agg.csv")
    write_rows_csv(csv_path, rows, knob, x, y)
    write_points_csv(agg_path, points, knob, x, y)
    png = None
    if plot:
        png = os.path.join(out_dir, f"frontier-{knob}.png")
        plot_frontier(png, points, knob, x, y, title=f"{model} on {dataset}: {y} vs {x}, sweeping {knob}")
    return {"rows": rows, "points": points, "csv": csv_path, "agg_csv": agg_path, "png": png}


def _abspath(path):
    return os.path.abspath(path) if path else None


def _summary_json(result):
    import json

    path = result.get("summary_path")
    if not path or not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _summary_value(result, key):
    return (_summary_json(result).get("config") or {}).get(key)


def _per_user_path(result):
    """The per-user CSV the run wrote (``save_per_user``), from its result or its summary; ``None`` if none."""
    return _abspath(result.get("per_user") or _summary_json(result).get("per_user"))


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------
def _csv_text(header, records):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for record in records:
        writer.writerow(["" if v is None else v for v in record])
    return buf.getvalue()


def write_rows_csv(path, rows, knob, x, y):
    metrics = []
    for row in rows:
        metrics += [m for m in row["test"] if m not in metrics]
    header = [knob, "seed", x, y] + [f"test_{m}" for m in metrics] + ["summary_path", "per_user"]
    records = [[r["value"], r["seed"], r[x], r[y]] + [r["test"].get(m) for m in metrics] + [r["summary_path"], r["per_user"]]
               for r in rows]
    atomic_write_text(path, _csv_text(header, records))
    return path


def write_points_csv(path, points, knob, x, y):
    cols = [f"{x}_mean", f"{x}_lo", f"{x}_hi", f"{y}_mean", f"{y}_lo", f"{y}_hi", "n_seeds", "interval", "pareto"]
    atomic_write_text(path, _csv_text([knob] + cols, [[p["value"]] + [p[c] for c in cols] for p in points]))
    return path


def _direction(metric):
    return "smaller is better" if smaller_is_better(metric) else "bigger is better"


def _bar_label(points, x):
    kinds = {p["interval"] for p in points if p[f"{x}_lo"] is not None}
    if all(k.startswith("t over") and "seeds" in k for k in kinds):
        return "mean over seeds, bars: 95% t-interval"
    if all("users" in k for k in kinds):
        return "mean over test users, bars: 95% t-interval"
    return "bars: 95% t-interval (seeds or users, see -agg.csv)"


def plot_frontier(path, points, knob, x, y, title):
    """y against x: error bars where there is an interval, each point labelled with its knob value,
    Pareto-optimal points ringed and joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    xs = np.array([p[f"{x}_mean"] for p in points])
    ys = np.array([p[f"{y}_mean"] for p in points])
    has = np.array([p[f"{x}_lo"] is not None and p[f"{y}_lo"] is not None for p in points])
    if has.any():
        xerr = np.array([[xs[i] - points[i][f"{x}_lo"], points[i][f"{x}_hi"] - xs[i]] for i in np.flatnonzero(has)]).T
        yerr = np.array([[ys[i] - points[i][f"{y}_lo"], points[i][f"{y}_hi"] - ys[i]] for i in np.flatnonzero(has)]).T
        ax.errorbar(xs[has], ys[has], xerr=xerr, yerr=yerr, fmt="o", color="tab:blue", ecolor="tab:blue",
                    elinewidth=1, capsize=3, ms=6, label=_bar_label(points, x))
    if (~has).any():
        ax.plot(xs[~has], ys[~has], "o", color="tab:gray", ms=6, label="run (no interval)")
    front = np.array([p["pareto"] for p in points])
    order = np.argsort(xs[front], kind="stable")
    ax.plot(xs[front][order], ys[front][order], "--", color="tab:red", lw=1, alpha=0.7)
    ax.plot(xs[front], ys[front], "o", ms=13, mfc="none", mec="tab:red", mew=1.6, label="Pareto-optimal")
    right = xs.min() + 0.7 * (xs.max() - xs.min())  # labels of the right-most points go to their left
    for p, px, py in zip(points, xs, ys):
        left = xs.max() > xs.min() and px > right
        ax.annotate(f"{knob}={p['value']}", (px, py), textcoords="offset points", xytext=(-8 if left else 8, 7),
                    ha="right" if left else "left", fontsize=9)
    ax.set_xlabel(f"{x} ({_direction(x)})")
    ax.set_ylabel(f"{y} ({_direction(y)})")
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.margins(0.15)
    ax.legend(fontsize=9, loc="best")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"))
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m recbole_ext.frontier", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--model", "-m", required=True)
    parser.add_argument("--dataset", "-d", required=True)
    parser.add_argument("--knob", required=True, help="the configuration key swept (cp_lambda, calitune_lambda, ...)")
    parser.add_argument("--values", required=True, help="comma-separated values of the knob")
    parser.add_argument("--checkpoint", default=None, help="a trained backbone the knob is evaluated over")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds: every value runs once per seed")
    parser.add_argument("--seed_key", default="seed", help="the key the seeds set (default seed; calitune_seed, ...)")
    parser.add_argument("--x", default="jsd@10", help="test metric on the x axis (default jsd@10)")
    parser.add_argument("--y", default="ndcg@10", help="test metric on the y axis (default ndcg@10)")
    parser.add_argument("--config_files", default=None, help="space-separated config files")
    parser.add_argument("--out_dir", default=os.path.join("saved", "frontier"), help="where the CSVs and the PNG go")
    return parser.parse_known_args(argv)


def _main(argv):
    args, rest = parse_args(argv)
    unknown = [a for a in rest if not (a.startswith("--") and "=" in a)]
    if unknown:
        raise ConfigError(f"arguments must look like --key=value; not understood: {' '.join(unknown)}")
    files = args.config_files.strip().split(" ") if args.config_files else None
    out = run_frontier(args.model, args.dataset, args.knob, args.values, checkpoint=args.checkpoint, seeds=args.seeds,
                       x=args.x, y=args.y, config_file_list=files, cmd_args=rest, out_dir=args.out_dir,
                       seed_key=args.seed_key)
    print(format_points_table(out["points"], args.knob, args.x, args.y))
    print(f"runs: {out['csv']}\npoints: {out['agg_csv']}\nplot: {out['png']}")
    return 0


def format_points_table(points, knob, x, y):
    def cell(p, m):
        lo = p[f"{m}_lo"]
        return f"{p[f'{m}_mean']:.4f}" + (f" [{lo:.4f}, {p[f'{m}_hi']:.4f}]" if lo is not None else "")

    lines = [f"{knob:>12}  {x:>26}  {y:>26}  pareto  interval"]
    for p in points:
        star = "*" if p["pareto"] else " "
        lines.append(f"{str(p['value']):>12}  {cell(p, x):>26}  {cell(p, y):>26}  {star:>6}  {p['interval']}")
    return "\n".join(lines)


def main(argv=None):
    from recbole_ext.cli import run_command

    return run_command(_main, sys.argv[1:] if argv is None else argv, prog="python -m recbole_ext.frontier")


if __name__ == "__main__":
    sys.exit(main())
