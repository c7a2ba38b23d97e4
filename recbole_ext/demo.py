"""``make demo``: train and evaluate default models on MovieLens-100k (bundled, offline) end to end
and print one results table, then one paired comparison (BPR + CP against BPR, user by user, with its
p-values: :mod:`recbole_ext.compare`). Each run goes through ``run_recbole`` exactly as the CLI does, so every
run also leaves its checkpoint in ``saved/``, its JSON summary and its per-user CSV in ``saved/results/``.

    python -m recbole_ext.demo [--quick] [--models BPR,EASE]
"""

import argparse
import sys
import time

import torch

import recbole_ext  # noqa: F401  (compatibility patches)
from recbole_ext.quick_start import run_recbole

METRICS = ["Recall", "NDCG", "Hit", "ItemCoverage", "GiniIndex"]
COLUMNS = ["recall@10", "ndcg@10", "hit@10", "itemcoverage@10", "giniindex@10"]
COMMON = {"metrics": METRICS, "valid_metric": "NDCG@10", "topk": [10], "show_progress": False, "state": "WARNING",
          "save_per_user": True}
# the demo's comparison: (baseline, other) labels of DEMO_RUNS and the per-user metrics compared
COMPARISON = ("BPR", "BPR + CP", ["ndcg@10", "recall@10", "hit@10"])

LEAVE_ONE_OUT = {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}}

# (label, model, extra config, epochs in the full demo, epochs with --quick). General models use RecBole's
# default random 80/10/10 split; BaM_REMI (sequential) per-user leave-one-out, its own protocol.
DEMO_RUNS = [
    ("Pop", "Pop", {}, 1, 1),
    ("BPR", "BPR", {}, 30, 3),
    ("BPR + CP", "BPR", {"rerank": "cp", "cp_lambda": 0.5}, 30, 3),
    ("LightGCN", "LightGCN", {}, 10, 1),
    ("EASE", "EASE", {}, 1, 1),
    ("GFCF", "GFCF", {}, 1, 1),
    ("TwoTower", "TwoTower", {}, 10, 1),
    ("BaM_REMI", "BaM_REMI", dict(LEAVE_ONE_OUT, MAX_ITEM_LIST_LENGTH=20, iters_per_epoch=200), 5, 1),
]


def run_demo(models=None, quick=False):
    rows = []
    for label, model, extra, epochs, quick_epochs in DEMO_RUNS:
        if models and label not in models and model not in models:
            continue
        config = dict(COMMON, epochs=quick_epochs if quick else epochs, **extra)
        start = time.perf_counter()
        result = run_recbole(model, "ml-100k", config_dict=config, cmd_args=[])
        row = {"model": label, "split": "leave-one-out" if "eval_args" in extra else "random 80/10/10",
               "seconds": time.perf_counter() - start, "summary_path": result.get("summary_path")}
        row.update(result["test_result"])
        rows.append(row)
        print(f"  {label:<10} done in {row['seconds']:.1f}s", flush=True)
    return rows


def format_table(rows):
    header = f"{'model':<10} {'split':<16} " + " ".join(f"{c:>16}" for c in COLUMNS) + f" {'seconds':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        values = " ".join(f"{row.get(c, float('nan')):>16.4f}" for c in COLUMNS)
        lines.append(f"{row['model']:<10} {row['split']:<16} {values} {row['seconds']:>8.1f}")
    return "\n".join(lines)


def comparison(rows):
    """The paired comparison of :data:`COMPARISON` as text (``None`` when either run is not among ``rows``)."""
    from recbole_ext.compare import compare_runs

    base, other, metrics = COMPARISON
    paths = {row["model"]: row.get("summary_path") for row in rows}
    if not (paths.get(base) and paths.get(other)):
        return None
    frame = compare_runs([paths[base], paths[other]], metrics=metrics)
    lines = [f"{other} vs {base}, paired over the same {int(frame['n'].iloc[0])} test users "
             "(difference = first − second; 95 % bootstrap interval; p-values Holm-adjusted over the "
             f"{len(frame)} metrics):"]
    for row in frame.itertuples(index=False):
        lines.append(f"  {row.metric:<10} {row.mean_b:.4f} vs {row.mean_a:.4f}  difference {-row.diff:+.4f} "
                     f"[{-row.ci_hi:+.4f}, {-row.ci_lo:+.4f}]  paired t p = {row.p_t_holm:.2g}, "
                     f"Wilcoxon p = {row.p_wilcoxon_holm:.2g}  -> {_verdict_text(row.verdict, base, other)}")
    return "\n".join(lines)


def _verdict_text(verdict, base, other):
    """compare's verdict names A (the baseline) and B (the other run); say which run that is."""
    return {"A better": f"{base} better", "B better": f"{other} better"}.get(verdict, verdict)


def main(argv=None):
    from recbole_ext.cli import run_command

    return run_command(_main, sys.argv[1:] if argv is None else argv, prog="python -m recbole_ext.demo")


def _main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one epoch per model (smoke run)")
    parser.add_argument("--models", default=None, help="comma-separated subset of the demo models")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    models = set(args.models.split(",")) if args.models else None
    print("recbole_ext demo on ml-100k (RecBole's bundled copy; test split, full ranking, top-10)", flush=True)
    rows = run_demo(models, quick=args.quick)
    print()
    print(format_table(rows))
    text = comparison(rows)
    if text:
        print()
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
