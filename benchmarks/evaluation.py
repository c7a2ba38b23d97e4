"""Full-sort evaluation in user blocks (``eval_block_mb``) against RecBole's batching, on ml-100k.

1. End to end: ``run_recbole`` of BPR (``properties/bpr_ml-100k.yaml``, ``--epochs`` epochs, validation every
   epoch, then the test) plain and with CP (``properties/calitune_cp_ml-100k.yaml``), each with RecBole's
   batching (``eval_block_mb: 0``) and with the default blocks; interleaved rounds, medians of the wall time
   of the whole call and of its ``train_seconds`` (training + validation) and ``eval_seconds`` (test).
2. Evaluation alone: one model per row (BPR, BPR + CP, LightGCN, MultiVAE, SASRec; trained ``--eval-epochs``
   epochs), its test split evaluated with each batching in turn; interleaved rounds, medians.

Every pair must give the same test metrics (the script stops otherwise). Writes the "Full-sort evaluation
in user blocks" section of BENCHMARKS.md.

    python benchmarks/evaluation.py [--rounds 3] [--eval-rounds 5] [--epochs 5] [--eval-epochs 1] [--threads 1]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import recbole_ext  # noqa: E402,F401
from benchmarks._report import markdown_table, write_section  # noqa: E402
from recbole_ext.config import Config  # noqa: E402
from recbole_ext.data.dataloader import with_recbole_batching  # noqa: E402
from recbole_ext.quick_start import run_recbole, setup_run  # noqa: E402

BPR_YAML = os.path.join(ROOT, "properties", "bpr_ml-100k.yaml")
SASREC_YAML = os.path.join(ROOT, "properties", "sasrec_ml-100k.yaml")
CP_YAML = os.path.join(ROOT, "properties", "calitune_cp_ml-100k.yaml")
SECTION = "Full-sort evaluation in user blocks"
BATCHINGS = (("RecBole (eval_block_mb: 0)", 0), ("blocks (eval_block_mb: default)", None))
EVAL_MODELS = (  # name, model, yaml files, extra config
    ("BPR", "BPR", [BPR_YAML], {}),
    ("BPR + CP", "BPR", [BPR_YAML, CP_YAML], {}),
    ("LightGCN", "LightGCN", [BPR_YAML], {}),
    ("MultiVAE", "MultiVAE", [BPR_YAML], {}),
    ("SASRec", "SASRec", [SASREC_YAML], {}),
)


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def quiet(work):  # metrics to 12 decimals, so that "identical" is checked beyond RecBole's 4
    return {"show_progress": False, "state": "WARNING", "log_wandb": False, "metric_decimal_place": 12,
            "checkpoint_dir": os.path.join(work, "saved"), "results_dir": os.path.join(work, "results")}


def with_budget(config_dict, budget):
    return config_dict if budget is None else {**config_dict, "eval_block_mb": budget}


# ------------------------------------------------------------------------------------------- end to end
def end_to_end(args, work):
    """{(run, batching): [(wall, train_seconds, eval_seconds)]}, {(run, batching): test_result} (users per
    batch: those of the evaluation-alone rows, same configuration)."""
    runs = (("BPR", [BPR_YAML]), ("BPR + CP", [BPR_YAML, CP_YAML]))
    times, results = {}, {}
    run_recbole("BPR", "ml-100k", [BPR_YAML], {**quiet(work), "epochs": 1}, cmd_args=[])  # warm-up, not timed
    for _ in range(args.rounds):
        for run_name, files in runs:
            for batching, budget in BATCHINGS:
                config_dict = with_budget({**quiet(work), "epochs": args.epochs}, budget)
                start = time.perf_counter()
                result = run_recbole("BPR", "ml-100k", files, config_dict, cmd_args=[])
                wall = time.perf_counter() - start
                times.setdefault((run_name, batching), []).append((wall, result["train_seconds"], result["eval_seconds"]))
                results.setdefault((run_name, batching), result["test_result"])
    return times, results


# ------------------------------------------------------------------------------------------ evaluation alone
def evaluation_alone(args, work):
    rows = []
    for name, model, files, extra in EVAL_MODELS:
        config = Config(model, "ml-100k", files, {**quiet(work), "epochs": args.eval_epochs, **extra}, cmd_args=[])
        run = setup_run(config)
        run.trainer.fit(run.train_data, saved=False)
        loaders = {"RecBole": with_recbole_batching(run.test_data), "blocks": run.test_data}
        seconds, results = {key: [] for key in loaders}, {}
        for _ in range(args.eval_rounds):
            for key, loader in loaders.items():
                start = time.perf_counter()
                results[key] = dict(run.trainer.evaluate(loader, load_best_model=False))
                seconds[key].append(time.perf_counter() - start)
        if results["RecBole"] != results["blocks"]:
            raise SystemExit(f"{name}: metrics differ between batchings: {results}")
        old, new = statistics.median(seconds["RecBole"]), statistics.median(seconds["blocks"])
        rows.append({"model": name, "users per batch (RecBole → blocks)": f"{loaders['RecBole'].step} → {loaders['blocks'].step}",
                     "batches": f"{len(loaders['RecBole'])} → {len(loaders['blocks'])}",
                     "RecBole (s)": old, "blocks (s)": new, "speed-up": f"{old / new:.1f}×",
                     "metrics identical": "yes"})
    return rows


# ------------------------------------------------------------------------------------------------- report
def report(args, e2e, e2e_load, alone, alone_load):
    times, results = e2e
    rows = []
    for run_name in ("BPR", "BPR + CP"):
        for batching, _ in BATCHINGS:
            samples = times[(run_name, batching)]
            wall, train, test = (statistics.median(s[i] for s in samples) for i in range(3))
            rows.append({"run": run_name, "batching": batching, "run_recbole wall (s)": wall, "train + valid (s)": train, "test eval (s)": test})
    by_key = {(r["run"], r["batching"]): r for r in rows}
    plain_old, plain_new = (by_key[("BPR", b)]["run_recbole wall (s)"] for b, _ in BATCHINGS)
    cp_old, cp_new = (by_key[("BPR + CP", b)]["run_recbole wall (s)"] for b, _ in BATCHINGS)
    same = all(results[(r, BATCHINGS[0][0])] == results[(r, BATCHINGS[1][0])] for r in ("BPR", "BPR + CP"))
    if not same:
        raise SystemExit(f"test metrics differ between batchings: {results}")
    body = (
        f"ml-100k (943 users, 1682 items), torch threads {args.threads}; the load averages below say whether "
        f"other jobs shared the 2-core machine (above ~0.5: timings indicative only).\n\n"
        f"**End to end** — `run_recbole('BPR', 'ml-100k', [bpr_ml-100k.yaml (+ calitune_cp_ml-100k.yaml)], "
        f"{{'epochs': {args.epochs}}})`, validation every epoch, then the test; medians over {args.rounds} "
        f"interleaved rounds (the four runs in turn each round, after one untimed warm-up run); load average {e2e_load[0]} at the start, "
        f"{e2e_load[1]} at the end. Test metrics identical between the batchings: "
        f"{'yes' if same else 'NO'}.\n\n"
        + markdown_table(rows, ["run", "batching", "run_recbole wall (s)", "train + valid (s)",
                                "test eval (s)"])
        + f"\n\nCP's extra wall time over plain BPR: {cp_old - plain_old:.2f} s with RecBole's batching "
        f"(CP/plain {cp_old / plain_old:.2f}×), {cp_new - plain_new:.2f} s with blocks "
        f"(CP/plain {cp_new / plain_new:.2f}×). Blocks vs RecBole's batching: plain {plain_old / plain_new:.2f}×, "
        f"CP {cp_old / cp_new:.2f}× faster end to end.\n\n"
        f"**Evaluation alone** — each model trained {args.eval_epochs} epoch(s), then its test split evaluated "
        f"with each batching in turn, medians over {args.eval_rounds} interleaved rounds; load average "
        f"{alone_load[0]} at the start, {alone_load[1]} at the end. Users per batch is the loader's step (a "
        f"split holds at most 943 users: one batch); metrics compared to 12 decimals.\n\n"
        + markdown_table(alone, ["model", "users per batch (RecBole → blocks)", "batches", "RecBole (s)", "blocks (s)",
                                 "speed-up", "metrics identical"])
    )
    write_section(SECTION, body)
    print(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--eval-rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--eval-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as work:
        cwd = os.getcwd()
        os.chdir(work)  # RecBole writes log/ and log_tensorboard/ relative to the working directory
        try:
            load_start = load_average()
            e2e = end_to_end(args, work)
            e2e_load = (load_start, load_average())
            alone = evaluation_alone(args, work)
            alone_load = (e2e_load[1], load_average())
        finally:
            os.chdir(cwd)
    report(args, e2e, e2e_load, alone, alone_load)


if __name__ == "__main__":
    main()
