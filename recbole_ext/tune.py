"""Parallel hyper-parameter search on Ray Tune (``run_hyper.py``), RecBole's params-file format.

Ray is an optional extra (``pip install -e .[tune]`` or ``pip install -r requirements-tune.txt``);
nothing here imports it until a search starts. RecBole's own ``recbole.trainer.hyper_tuning`` is
never imported (hyperopt / old ray, NumPy 1).

Params file, one parameter a line, as RecBole's ``HyperTuning._build_space_from_file``::

    learning_rate loguniform -8,0        # exp(uniform(-8, 0)), hyperopt's convention
    embedding_size choice [64,96,128]
    reg_weight uniform 0.0,0.1
    train_batch_size quniform 512,4096,512   # whole numbers in, whole numbers out: 512, 1024, ..., 4096
    n_layers randint 1,4                     # a whole number in [1, 4): 1, 2 or 3 (high excluded, as Ray / NumPy)

A ``quniform`` whose bounds and step are all whole numbers samples integers (each multiple of the step
between the bounds equally likely), so that integer keys (``train_batch_size``, ``embedding_size``) stay
integers; otherwise it samples floats (multiples of the step). ``randint`` (recbole_ext's addition to
RecBole's four types) samples integers. ``choice`` keeps the listed values as written.

Each trial is one :func:`recbole_ext.quick_start.run_recbole` run (one process, ``cpus_per_trial``
threads); trials run in parallel on a local Ray instance (default) or a cluster (``address``).
"""

import ast
import json
import math
import os
import time

from recbole_ext.errors import ConfigError

PARAM_TYPES = ("choice", "uniform", "loguniform", "quniform", "randint")
#: an integer quniform is sampled from the list of its values; more than this is refused
MAX_INTEGER_VALUES = 100_000
RAY_MISSING = (
    "hyper-parameter search runs on Ray Tune, which is not installed: "
    "pip install -r requirements-tune.txt   (or: pip install -e .[tune])"
)


def parse_params_file(path):
    """RecBole's params file -> ``{name: (type, args)}`` in file order (no Ray needed). Nothing in the file
    is executed: ``choice`` values are Python literals (``ast.literal_eval``), bounds are numbers; a
    string value reaches the trial's ``config_dict`` as a string, parsed again by
    :func:`recbole_ext.config.parse_value`.

    ``choice`` args: the list of values; ``uniform``/``loguniform``: ``(low, high)`` as written
    (log bounds for loguniform); ``quniform``: ``(low, high, q)``, ints when all three are whole numbers
    (an integer parameter, see :func:`integer_values`); ``randint``: ``(low, high)`` ints, high excluded.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"params file not found: {path}")
    space = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            parts = line.split()
            if len(parts) < 3:
                if line:
                    raise ConfigError(f"{path}:{number}: expected 'name type values', got '{line}'")
                continue
            name, kind, value = parts[0], parts[1], "".join(parts[2:])
            where = f"{path}:{number} ({name})"
            if name in space:
                raise ConfigError(f"{where}: '{name}' is defined twice in the params file: keep one line")
            if kind == "choice":
                try:
                    values = ast.literal_eval(value)
                except (ValueError, SyntaxError) as err:
                    raise ConfigError(f"{where}: choice needs a Python list literal, got '{value}'") from err
                if not isinstance(values, (list, tuple)) or not values:
                    raise ConfigError(f"{where}: choice needs a non-empty list, got '{value}'")
                space[name] = ("choice", list(values))
            elif kind in ("uniform", "loguniform", "quniform"):
                try:
                    numbers = tuple(float(v) for v in value.split(","))
                except ValueError as err:
                    raise ConfigError(f"{where}: {kind} needs numbers 'low,high{',q' if kind == 'quniform' else ''}'") from err
                if (len(numbers) != (3 if kind == "quniform" else 2) or not all(map(math.isfinite, numbers))
                        or numbers[0] > numbers[1] or (kind == "quniform" and numbers[2] <= 0)):
                    raise ConfigError(f"{where}: bad {kind} bounds '{value}' (finite low <= high"
                                      f"{', step q > 0' if kind == 'quniform' else ''})")
                if kind == "quniform" and all(n.is_integer() for n in numbers):
                    numbers = tuple(int(n) for n in numbers)
                    count = len(integer_values(numbers))
                    if count == 0:
                        raise ConfigError(f"{where}: quniform '{value}' has no multiple of {numbers[2]} between "
                                          f"{numbers[0]} and {numbers[1]}")
                    if count > MAX_INTEGER_VALUES:
                        raise ConfigError(f"{where}: quniform '{value}' has {count} values (at most "
                                          f"{MAX_INTEGER_VALUES}): use a larger step")
                space[name] = (kind, numbers)
            elif kind == "randint":
                try:
                    numbers = tuple(int(v) for v in value.split(","))
                except ValueError as err:
                    raise ConfigError(f"{where}: randint needs whole numbers 'low,high', got '{value}'") from err
                if len(numbers) != 2 or numbers[0] >= numbers[1]:
                    raise ConfigError(f"{where}: bad randint bounds '{value}' (whole numbers low < high; high "
                                      f"is excluded)")
                space[name] = (kind, numbers)
            else:
                raise ConfigError(f"{where}: unknown parameter type '{kind}' (one of {', '.join(PARAM_TYPES)})")
    if not space:
        raise ConfigError(f"params file {path} defines no parameter")
    return space


def is_integer_quniform(args):
    return all(isinstance(a, int) for a in args)


def integer_values(args):
    """The values of an integer ``quniform (low, high, q)``: the multiples of ``q`` in ``[low, high]``."""
    low, high, q = args
    return range(-(-low // q) * q, high + 1, q)


def probe_values(space):
    """One value of each searched parameter (the first choice, the lower bound) for a check of the
    configuration before the search starts."""
    values = {}
    for name, (kind, args) in space.items():
        if kind == "choice":
            values[name] = args[0]
        elif kind == "loguniform":
            values[name] = math.exp(args[0])
        elif kind == "quniform":
            values[name] = integer_values(args)[0] if is_integer_quniform(args) else round(args[0] / args[2]) * args[2]
        else:  # uniform: the lower bound; randint: its lowest value
            values[name] = args[0]
    return values


def import_ray():
    try:
        import ray
        from ray import tune
    except ImportError as err:
        raise ConfigError(RAY_MISSING) from err
    return ray, tune


def ray_search_space(space, grid=False):
    """``parse_params_file``'s space as Ray Tune distributions (``grid``: choices as grid_search)."""
    _, tune = import_ray()
    out = {}
    for name, (kind, args) in space.items():
        if kind == "choice":
            out[name] = tune.grid_search(args) if grid else tune.choice(args)
        elif kind == "uniform":
            out[name] = tune.uniform(*args)
        elif kind == "loguniform":  # RecBole / hyperopt: bounds are logs
            out[name] = tune.loguniform(math.exp(args[0]), math.exp(args[1]))
        elif kind == "randint":
            out[name] = tune.randint(*args)
        elif is_integer_quniform(args):  # ints, each multiple of q equally likely (same on every Ray version)
            out[name] = tune.choice(list(integer_values(args)))
        else:
            out[name] = tune.quniform(*args)
    return out


def _plain(value):
    """NumPy scalars (Tune's samples) as Python numbers, for configs, JSON and YAML."""
    if hasattr(value, "item"):
        return value.item()
    return value


def _trial(params, model, dataset, config_file_list, base_config, cpus_per_trial):
    """One trial: a full run_recbole run in this Ray worker, reported to Tune."""
    import torch
    from ray import tune

    torch.set_num_threads(max(1, int(cpus_per_trial)))
    from recbole_ext.quick_start import run_recbole

    trial_dir = tune.get_context().get_trial_dir() or os.getcwd()
    config_dict = dict(base_config)
    config_dict.update({k: _plain(v) for k, v in params.items()})
    config_dict.setdefault("checkpoint_dir", os.path.join(trial_dir, "saved"))
    started_at, start = time.time(), time.perf_counter()
    result = run_recbole(model, dataset, config_file_list=config_file_list, config_dict=config_dict,
                         cmd_args=[], write_results=False)
    report = {"valid_score": float(result["best_valid_score"]), "seconds": round(time.perf_counter() - start, 2),
              "started_at": started_at, "ended_at": time.time(), "pid": os.getpid()}
    report.update({f"valid/{k}": v for k, v in (result["best_valid_result"] or {}).items()})
    report.update({f"test/{k}": v for k, v in (result["test_result"] or {}).items()})
    tune.report(report)


def run_search(model, dataset, params_file, config_file_list=None, config_dict=None, address=None,
               max_trials=None, max_concurrent=None, cpus_per_trial=1, output_dir=None, verbose=1):
    """Search ``params_file``'s space for ``model`` on ``dataset``; return a summary dict with the
    ``best`` trial, every ``trials`` row (sorted best first) and the written ``best_path`` /
    ``results_path``. All choices and no ``max_trials``: exhaustive grid; otherwise
    ``max_trials`` (default 10) random samples."""
    from recbole_ext.config import Config
    from recbole_ext.io import atomic_write_text

    space = parse_params_file(params_file)
    config_file_list = [os.path.abspath(p) for p in (config_file_list or [])]
    fixed = dict(config_dict or {})
    base = dict(fixed)
    # the searched keys too (one sample each): a misspelt key or a refused value stops here, before Ray starts
    probe = Config(model, dataset, config_file_list=config_file_list, config_dict={**base, **probe_values(space)},
                   cmd_args=[])
    bigger = bool(probe["valid_metric_bigger"])
    base.setdefault("data_path", os.path.abspath(probe.external_config_dict.get("data_path", "dataset/")))
    base.setdefault("show_progress", False)
    base.setdefault("state", "WARNING")
    base.setdefault("log_wandb", False)
    grid = max_trials is None and all(kind == "choice" for kind, _ in space.values())
    num_samples = 1 if grid else int(max_trials or 10)
    output_dir = os.path.abspath(output_dir or os.path.join("saved", "hyper"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{probe['model']}-{probe['dataset']}-{stamp}"

    ray, tune = import_ray()
    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level="WARNING")
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
        started_here = True
    try:
        trainable = tune.with_parameters(
            _trial, model=model, dataset=dataset, config_file_list=config_file_list, base_config=base,
            cpus_per_trial=cpus_per_trial,
        )
        trainable = tune.with_resources(trainable, {"cpu": cpus_per_trial})
        tuner = tune.Tuner(
            trainable,
            param_space=ray_search_space(space, grid=grid),
            tune_config=tune.TuneConfig(
                metric="valid_score", mode="max" if bigger else "min", num_samples=num_samples,
                max_concurrent_trials=max_concurrent,
            ),
            run_config=tune.RunConfig(name=name, storage_path=os.path.join(output_dir, "ray"), verbose=verbose),
        )
        grid_result = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()

    trials = []
    for result in grid_result:
        row = {"params": {k: _plain(v) for k, v in (result.config or {}).items()}}
        if result.error is not None:
            row["error"] = error_line(result.error)
        else:
            row.update({k: v for k, v in (result.metrics or {}).items()
                        if k in ("valid_score", "seconds", "started_at", "ended_at", "pid")
                        or k.startswith(("valid/", "test/"))})
        trials.append(row)
    ok = [t for t in trials if "valid_score" in t]
    ok.sort(key=lambda t: t["valid_score"], reverse=bigger)
    trials = ok + [t for t in trials if "valid_score" not in t]
    summary = {
        "model": probe["model"], "dataset": probe["dataset"], "params_file": os.path.abspath(params_file),
        "valid_metric": probe["valid_metric"], "valid_metric_bigger": bigger, "search": "grid" if grid else "random",
        "trials": trials, "best": ok[0] if ok else None,
    }
    summary["results_path"] = os.path.join(output_dir, f"{name}-results.json")
    atomic_write_text(summary["results_path"], json.dumps(summary, indent=2) + "\n")
    if ok:
        import yaml

        summary["best_path"] = os.path.join(output_dir, f"{name}-best.yaml")
        header = (f"# best of {len(ok)} trials ({summary['search']} search over {params_file}): "
                  f"valid {probe['valid_metric']} = {ok[0]['valid_score']}\n"
                  f"# python run_recbole.py --model={probe['model']} --dataset={probe['dataset']} "
                  f"--config_files={summary['best_path']}\n")
        best_config = {**fixed, **ok[0]["params"]}  # the fixed --key=value settings too: reproduces the trial
        atomic_write_text(summary["best_path"], header + yaml.safe_dump(best_config, sort_keys=False))
    return summary


def error_line(error):
    """A failed trial's error in one line, ``Type: message`` of the exception the trial raised (Ray wraps it:
    its own first lines name Ray's worker, the last line of the traceback names the cause)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, type(error)):
        return error_line(cause)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1:  # a traceback: its last line is "module.Type: message"
        text = lines[-1]
        head, sep, message = text.partition(": ")
        if sep and " " not in head:
            text = f"{head.rsplit('.', 1)[-1]}: {message}"
    else:
        text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text[:300]


def _table(head, rows, left=()):
    """Columns right-aligned (those in ``left`` left-aligned), two spaces apart."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(head)] + [line(r) for r in rows])


def format_trials_table(summary):
    """The finished trials (best first: parameters, valid score, test metrics, seconds), then one table of
    the failed trials with their parameters and error lines."""
    trials = summary["trials"]
    names = list(space_names(trials))
    ok = [t for t in trials if "error" not in t]
    failed = [t for t in trials if "error" in t]
    parts = []
    if ok:
        metrics = sorted({k for t in ok for k in t if k.startswith("test/")})
        head = names + ["valid_score"] + [m[5:] for m in metrics] + ["seconds"]
        rows = [[_fmt(t["params"].get(n)) for n in names] + [_fmt(t["valid_score"])]
                + [_fmt(t.get(m)) for m in metrics] + [_fmt(t.get("seconds"))] for t in ok]
        parts.append(_table(head, rows))
    if failed:
        parts.append(f"{len(failed)} of {len(trials)} trials failed:")
        rows = [[_fmt(t["params"].get(n)) for n in names] + [t["error"]] for t in failed]
        parts.append(_table(names + ["error"], rows, left={len(names)}))
    return "\n".join(parts) if parts else "no trials ran"


def write_recbole_result(summary, path):
    """RecBole's ``HyperTuning.export_result`` text file (``--output_file``): per trial a line of
    ``name:value`` parameters, then ``Valid result:`` and ``Test result:`` lines (``metric : value``); a
    failed trial gets an ``Error:`` line instead. Returns the absolute path."""
    from recbole_ext.io import atomic_write_text

    def metrics(trial, prefix):
        return "    ".join(f"{k[len(prefix):]} : {trial[k]}" for k in trial if k.startswith(prefix))

    blocks = []
    for trial in summary["trials"]:
        params = ", ".join(f"{k}:{v}" for k, v in trial["params"].items())
        if "error" in trial:
            blocks.append(f"{params}\nError: {trial['error']}\n")
        else:
            blocks.append(f"{params}\nValid result:\n{metrics(trial, 'valid/')}\n"
                          f"Test result:\n{metrics(trial, 'test/')}\n")
    path = os.path.abspath(path)
    atomic_write_text(path, "\n".join(blocks))
    return path


def write_display_file(summary, path):
    """RecBole's ``--display_file``: an HTML plot (plotly) of the valid score of each finished trial, in
    the order the trials started, the parameters shown on hover. Returns the absolute path."""
    import plotly.graph_objects as go

    from recbole_ext.io import atomic_write_text

    ok = sorted((t for t in summary["trials"] if "error" not in t), key=lambda t: t.get("started_at", 0))
    fig = go.Figure(go.Scatter(
        x=list(range(1, len(ok) + 1)), y=[t["valid_score"] for t in ok],
        text=[", ".join(f"{k}={v}" for k, v in t["params"].items()) for t in ok], mode="lines+markers",
        name=f"{summary['model']} tuning process",
    ))
    fig.update_layout(title=f"{summary['model']} on {summary['dataset']}: hyper-parameter trials",
                      xaxis_title="trial (in start order)", yaxis_title=f"valid {summary['valid_metric']}")
    path = os.path.abspath(path)
    atomic_write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))
    return path


def space_names(trials):
    seen = []
    for t in trials:
        for k in t["params"]:
            if k not in seen:
                seen.append(k)
    return seen


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
