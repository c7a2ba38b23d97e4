"""Compare runs user by user: paired differences, bootstrap intervals, paired tests, Holm correction.

    python -m recbole_ext.compare A.json B.json [C.json ...] [--all-pairs] [--metrics ndcg@10,jsd@10]
                                  [--level 0.95] [--resamples 10000] [--seed 0] [--out result.csv|result.json]

Each argument is a run's JSON summary (``saved/results/<Model>-<dataset>-<time>-<pid>.json``) written with
``--save_per_user=True``: its per-user CSV (summary key ``per_user``) holds one row per test user. Every later
run is compared with the first (``--all-pairs``: every pair) on every per-user metric the runs share (or those
of ``--metrics``). Per (pair, metric): both means, the mean paired difference A − B with its percentile
bootstrap interval, the paired t-test and Wilcoxon signed-rank p-values, both Holm-adjusted across all tests
of the call, Cohen's d_z, and a verdict ("A better" / "B better" / "tie" at Holm-adjusted t-test p < 1 − level,
the direction from RecBole's smaller-is-better metric list). Prints an aligned table; ``--out`` also writes it
as CSV or JSON.

Runs are refused (``error: ...``, exit status 2) when a summary has no per-user file, when they are on other
datasets or other train/valid/test splits (``config.split_fingerprint``), when their users differ, or when a
metric is missing. Library use: :func:`compare_runs`. docs/compare.md explains the statistics and their
assumptions.
"""

import argparse
import itertools
import json
import os
import sys
from typing import NamedTuple

import numpy as np
import pandas as pd

import recbole_ext.evaluator.metrics  # noqa: F401  (registers our metrics, e.g. jsd in smaller_metrics)
from recbole_ext.errors import ComparisonError
from recbole_ext.evaluator.per_user import GROUP_COLUMN, USER_COLUMN, metric_columns
from recbole_ext.evaluator.register import smaller_is_better
from recbole_ext.io import atomic_write_text
from recbole_ext.stats import DEFAULT_LEVEL, DEFAULT_RESAMPLES, holm, paired_comparison

PROG = "python -m recbole_ext.compare"
COLUMNS = ["A", "B", "metric", "n", "mean_a", "mean_b", "diff", "ci_lo", "ci_hi", "t", "p_t", "p_t_holm",
           "w", "p_wilcoxon", "p_wilcoxon_holm", "dz", "verdict"]
RERUN_HINT = "rerun it with --save_per_user=True (config save_per_user: True)"


class RunTable(NamedTuple):
    """One run: its label, where its summary came from, the summary and its per-user table."""

    label: str
    source: str
    summary: dict
    table: pd.DataFrame


def _read_summary(item, index):
    if isinstance(item, dict):
        return f"<summary {index + 1}>", item, os.getcwd()
    path = os.fspath(item)
    try:
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    except json.JSONDecodeError as err:
        raise ComparisonError(f"{path} is not a JSON run summary ({err})") from err
    if not isinstance(summary, dict) or "test_result" not in summary:
        raise ComparisonError(f"{path} is not a run summary of run_recbole (no 'test_result')")
    return path, summary, os.path.dirname(os.path.abspath(path))


def load_run(item, index=0):
    """A :class:`RunTable` from a summary path (or an already loaded summary dict); the label is filled in by
    :func:`load_runs`."""
    source, summary, folder = _read_summary(item, index)
    per_user = summary.get("per_user")
    if not per_user:
        why = (summary.get("per_user_skipped") or {}).get("*")
        reason = f" ({why})" if why else ""
        raise ComparisonError(f"{source} has no per-user file{reason}: {RERUN_HINT}")
    path = per_user if os.path.isabs(per_user) else os.path.join(folder, per_user)
    if not os.path.isfile(path):
        raise ComparisonError(f"{source} names the per-user file {path}, which does not exist: {RERUN_HINT}")
    header = pd.read_csv(path, nrows=0).columns
    # user tokens are text as written ("NA" is a user, not a missing value); metric cells parse as numbers
    table = pd.read_csv(path, dtype={USER_COLUMN: str, GROUP_COLUMN: str}, keep_default_na=False,
                        na_values={c: ["", "nan", "NaN"] for c in header if c not in (USER_COLUMN, GROUP_COLUMN)})
    if USER_COLUMN not in table.columns:
        raise ComparisonError(f"per-user file {path} has no '{USER_COLUMN}' column: not a save_per_user file")
    duplicated = table[USER_COLUMN].duplicated()
    if duplicated.any():
        raise ComparisonError(f"per-user file {path} lists user '{table[USER_COLUMN][duplicated].iloc[0]}' twice")
    return RunTable("", source, summary, table)


def _label(summary):
    label = str(summary.get("model", "run"))
    rerank = (summary.get("config") or {}).get("rerank")
    if rerank and str(rerank).lower() not in ("none", "false"):
        label += f"+{rerank}"
    return label


def load_runs(summaries):
    """:class:`RunTable` per summary, labelled by model (``+rerank``), numbered where labels repeat."""
    runs = [load_run(item, i) for i, item in enumerate(summaries)]
    labels = [_label(run.summary) for run in runs]
    counts = pd.Series(labels).value_counts()
    labels = [f"{label}#{i + 1}" if counts[label] > 1 else label for i, label in enumerate(labels)]
    return [run._replace(label=label) for run, label in zip(runs, labels)]


def _fingerprint(run):
    return (run.summary.get("config") or {}).get("split_fingerprint")


def check_comparable(runs):
    """Refuse runs on other datasets, other splits or other users than the first (:class:`ComparisonError`)."""
    first = runs[0]
    for run in runs[1:]:
        if run.summary.get("dataset") != first.summary.get("dataset"):
            raise ComparisonError(
                f"runs are on different datasets: {first.label} ({first.source}) on '{first.summary.get('dataset')}', "
                f"{run.label} ({run.source}) on '{run.summary.get('dataset')}'"
            )
        fa, fb = _fingerprint(first), _fingerprint(run)
        if not fa or not fb:
            missing = first if not fa else run
            raise ComparisonError(
                f"{missing.source} records no split_fingerprint: cannot check that the runs share their "
                "train/valid/test split; rerun it with this version of recbole_ext"
            )
        if fa.get("sha256") != fb.get("sha256"):
            parts = [p for p in ("train", "valid", "test") if (fa.get(p) or {}) != (fb.get(p) or {})]
            raise ComparisonError(
                f"runs are on different train/valid/test splits ({', '.join(parts) or 'vocabulary'} differ): "
                f"{first.label} ({first.source}) and {run.label} ({run.source}); per-user comparisons need one "
                "split: use the same seed, eval_args and data filters (for runs over seeds, compare multi-seed "
                "summaries instead)"
            )
        users_a = pd.Index(first.table[USER_COLUMN])
        users_b = pd.Index(run.table[USER_COLUMN])
        only_a = int((~users_a.isin(users_b)).sum())
        only_b = int((~users_b.isin(users_a)).sum())
        if only_a or only_b:
            raise ComparisonError(
                f"runs evaluate different users: {only_a} of {first.label}'s {len(users_a)} users are missing from "
                f"{run.label}, {only_b} of {run.label}'s {len(users_b)} users are missing from {first.label} "
                f"({first.source}, {run.source}); compare runs evaluated on the same test users"
            )


def _metrics(runs, metrics):
    if metrics is None:
        common = [c for c in metric_columns(runs[0].table) if all(c in run.table.columns for run in runs[1:])]
        if not common:
            raise ComparisonError("the runs share no per-user metric column: "
                                  + "; ".join(f"{run.label}: {metric_columns(run.table)}" for run in runs))
        return common
    if isinstance(metrics, str):
        metrics = metrics.split(",")
    names = [str(m).strip().lower() for m in metrics if str(m).strip()]
    if not names:
        raise ComparisonError("no metric given: name per-user columns such as ndcg@10,jsd@10")
    for run in runs:
        missing = [m for m in names if m not in metric_columns(run.table)]
        if missing:
            raise ComparisonError(
                f"metric {', '.join(missing)} is missing from {run.label}'s per-user file ({run.source}); it has "
                f"{', '.join(metric_columns(run.table))} (names as in test_result, e.g. ndcg@10)"
            )
    return names


#: settings that give a per-user value its meaning: (name, applies to metric columns, config -> value)
_CALIBRATION = ("jsd", "miscalkl")
MEANING_SETTINGS = (
    ("the test evaluation mode (eval_args.mode)", lambda m: True, lambda c: _test_mode(c.get("eval_args"))),
    ("popularity_source", lambda m: m.split("@")[0] in _CALIBRATION, lambda c: c.get("popularity_source")),
    ("popularity_proportions", lambda m: m.split("@")[0] in _CALIBRATION, lambda c: c.get("popularity_proportions")),
    ("miscal_alpha", lambda m: m.split("@")[0] == "miscalkl", lambda c: c.get("miscal_alpha")),
)


def _test_mode(eval_args):
    mode = (eval_args or {}).get("mode")
    return mode.get("test") if isinstance(mode, dict) else mode


def check_same_meaning(runs, names):
    """Refuse runs whose metric values mean different things: another test evaluation mode (full ranking vs
    sampled candidates) or, for calibration metrics, other popularity bins."""
    first = runs[0]
    for label, applies, value in MEANING_SETTINGS:
        if not any(applies(name) for name in names):
            continue
        expected = value(first.summary.get("config") or {})
        for run in runs[1:]:
            got = value(run.summary.get("config") or {})
            if got != expected:
                raise ComparisonError(
                    f"runs differ in {label}: {first.label} {expected!r}, {run.label} {got!r}; their per-user values "
                    "are not comparable"
                )


def _verdict(diff, p_holm, smaller, alpha):
    if np.isnan(p_holm):
        return "n/a"
    if p_holm >= alpha or diff == 0:
        return "tie"
    a_better = diff < 0 if smaller else diff > 0
    return "A better" if a_better else "B better"


def compare_runs(summaries, metrics=None, level=DEFAULT_LEVEL, all_pairs=False, n_resamples=DEFAULT_RESAMPLES,
                 seed=0):
    """Paired per-user comparison of runs (see the module docstring): one row per (pair, metric) with the
    columns of :data:`COLUMNS`; ``A`` / ``B`` are run labels (``frame.attrs["runs"]``: label -> summary).

    ``summaries``: summary paths (or loaded summary dicts) with per-user files, the first being the baseline
    unless ``all_pairs``; ``metrics``: per-user column names (list or ``"a,b"``), default all shared ones."""
    if len(summaries) < 2:
        raise ComparisonError(f"compare needs at least two run summaries, got {len(summaries)}")
    if not 0.0 < float(level) < 1.0:
        raise ComparisonError(f"level must lie in (0, 1), got {level}")
    runs = load_runs(summaries)
    check_comparable(runs)
    names = _metrics(runs, metrics)
    check_same_meaning(runs, names)
    order = runs[0].table[USER_COLUMN]
    aligned = [run.table.set_index(USER_COLUMN).loc[order] for run in runs]
    pairs = itertools.combinations(range(len(runs)), 2) if all_pairs else ((0, j) for j in range(1, len(runs)))
    rows = []
    for i, j in pairs:
        for name in names:
            stats = paired_comparison(aligned[i][name].to_numpy(np.float64), aligned[j][name].to_numpy(np.float64),
                                      level=level, n_resamples=n_resamples, seed=seed)
            rows.append({"A": runs[i].label, "B": runs[j].label, "metric": name, **stats})
    frame = pd.DataFrame(rows)
    frame["p_t_holm"] = holm(frame["p_t"].to_numpy())
    frame["p_wilcoxon_holm"] = holm(frame["p_wilcoxon"].to_numpy())
    alpha = 1.0 - float(level)
    frame["verdict"] = [_verdict(d, p, smaller_is_better(m), alpha)
                        for d, p, m in zip(frame["diff"], frame["p_t_holm"], frame["metric"])]
    frame = frame[COLUMNS]
    frame.attrs["runs"] = {run.label: run.source for run in runs}
    return frame


def _cell(value):
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if np.isnan(value):
            return "nan"
        return f"{value:.4g}" if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4) else f"{value:.4f}"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def format_table(frame):
    """The comparison as an aligned text table (plain numbers), with the runs' sources above it."""
    cells = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    header = list(frame.columns)
    widths = [max([len(h)] + [len(r[c]) for r in cells]) for c, h in enumerate(header)]
    text_columns = {"A", "B", "metric", "verdict"}

    def line(values):
        cells = (v.ljust(w) if h in text_columns else v.rjust(w) for v, w, h in zip(values, widths, header))
        return "  ".join(cells).rstrip()

    runs = frame.attrs.get("runs", {})
    lines = [f"{label}: {source}" for label, source in runs.items()]
    lines += [line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in cells]
    return "\n".join(lines)


def write_output(frame, path):
    """Write the comparison as CSV (``.csv``) or JSON records (``.json``), atomically."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        text = frame.to_csv(index=False)
    elif ext == ".json":
        records = json.loads(frame.to_json(orient="records", double_precision=15))
        text = json.dumps({"runs": frame.attrs.get("runs", {}), "comparisons": records}, indent=2) + "\n"
    else:
        raise ComparisonError(f"--out {path}: give a file ending in .csv or .json")
    atomic_write_text(path, text)
    return path


def parse_args(argv):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summaries", nargs="+", help="run summaries (JSON) written with --save_per_user=True")
    parser.add_argument("--all-pairs", action="store_true", help="compare every pair, not every run against the first")
    parser.add_argument("--metrics", default=None, help="comma-separated per-user columns (default: all shared)")
    parser.add_argument("--level", type=float, default=DEFAULT_LEVEL, help="interval level; verdicts at p < 1 - level")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--out", default=None, help="also write the table to this .csv or .json file")
    return parser.parse_args(argv)


def _main(argv):
    args = parse_args(argv)
    if args.out and os.path.splitext(args.out)[1].lower() not in (".csv", ".json"):
        raise ComparisonError(f"--out {args.out}: give a file ending in .csv or .json")
    frame = compare_runs(args.summaries, metrics=args.metrics, level=args.level, all_pairs=args.all_pairs,
                         n_resamples=args.resamples, seed=args.seed)
    print(format_table(frame))
    if args.out:
        print(f"written to {write_output(frame, args.out)}")
    return 0


def main(argv=None):
    """The command line, through recbole_ext's error boundary (input errors: ``error: ...``, exit status 2).

    ``recbole_ext.cli`` is the command-line layer above this module: it is looked up by name when the command
    runs, so that the library functions above never depend on it."""
    from recbole_ext.cli import run_command

    return run_command(_main, sys.argv[1:] if argv is None else argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
