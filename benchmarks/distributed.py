"""Distributed benchmark: 2 CPU processes (Gloo DDP) vs 1 process on ml-100k, same test metrics?

    .venv/bin/python benchmarks/distributed.py [--seeds 2020 2021 2022]    # writes BENCHMARKS.md "Distributed"

For each method and seed: one single-process run (torch threads = all cores) and one 2-process run
(``recbole_ext.distributed.launch``, Gloo, 1 thread per process), same configuration and seed (the
2-process run draws different negatives / shuffles: ranks seed with seed + rank, as RecBole).
Reported: mean +- std over seeds of the test metrics, the largest |difference| of seed-paired runs
and of the means, and throughput = training rows per second per process over the whole fit
(training + per-epoch validation, as run_recbole times it). Methods: BPR (RecBole's trainer, 5
epochs, RS 8:1:1, full ranking), BaM_REMI (recbole_ext's BaM trainer + sampler,
``properties/bam_ml-100k.yaml`` shortened: 3 epochs x 60 iterations, batch 256, 256 negatives,
seq_len 20), MoRec (3 epochs, PID coordinator, fairness + alignment + revenue, on a BPR pretrained
once on ml-100k-morec) and CaliTune (4 epochs on a BPR backbone trained once; ``calitune_seed``
varied). Everything is written under ``saved/bench_distributed``.
"""

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
WORK = os.path.join(ROOT, "saved", "bench_distributed")

QUIET = {"show_progress": False, "state": "WARNING", "log_wandb": False,
         "checkpoint_dir": os.path.join(WORK, "ckpt"), "results_dir": os.path.join(WORK, "results")}
CALITUNE_FILES = [os.path.join(ROOT, "properties", "calitune_backbone_bpr_ml-100k.yaml"),
                  os.path.join(ROOT, "properties", "calitune_ml-100k.yaml")]
# CaliTune's backbone: BPR trained once, in one process, seed 2020 (the split follows `seed`, so every
# CaliTune run keeps seed 2020 and varies `calitune_seed`, the fine-tuning's own seed)
BACKBONE = {"embedding_size": 64, "learning_rate": 5e-3, "epochs": 20, "eval_step": 5, "seed": 2020,
            "metrics": ["NDCG", "JSD"]}
# MoRec: ml-100k-morec (recbole_ext.data.morec_data.prepare_ml100k; leave-one-out, so the split does
# not depend on the seed: `seed` varies the sampler and negatives); BPR pretrained once, 10 epochs
MOREC_YAML = os.path.join(ROOT, "properties", "morec_ml-100k.yaml")
METHODS = {
    "BPR": {"files": [], "config": {"epochs": 5, "metrics": ["Recall", "NDCG", "ItemCoverage"], "topk": [10],
                                     "valid_metric": "NDCG@10"}},
    "BaM_REMI": {"files": [os.path.join(ROOT, "properties", "bam_ml-100k.yaml")],
                 "config": {"epochs": 3, "iters_per_epoch": 60, "train_batch_size": 256, "sampled_n": 256,
                            "MAX_ITEM_LIST_LENGTH": 20, "learning_rate": 0.003}},
    "MoRec": {"model": "BPR", "dataset": "ml-100k-morec", "files": [MOREC_YAML],
              "config": {"data_path": os.path.join(WORK, "dataset"), "trainer": "MoRec", "epochs": 3,
                         "train_batch_size": 2048, "eval_batch_size": 8192}},
    "CaliTune": {"model": "BPR", "files": CALITUNE_FILES, "seed_key": "calitune_seed",
                 "config": {**BACKBONE, "trainer": "CaliTune", "epochs": 4, "calitune_lambda": 0.5,
                            "learning_rate": 1e-3, "calitune_batch_size": 64, "calitune_candidates": 100}},
}


def backbone_checkpoint():
    from recbole_ext.quick_start import run_recbole

    path = os.path.join(WORK, "backbone.json")
    if os.path.exists(path) and os.path.exists(json.load(open(path))["checkpoint"]):
        return json.load(open(path))["checkpoint"]
    config = {**QUIET, **BACKBONE, "checkpoint_dir": os.path.join(WORK, "backbone")}
    result = run_recbole("BPR", "ml-100k", config_file_list=CALITUNE_FILES[:1], config_dict=config, cmd_args=[])
    json.dump({"checkpoint": result["checkpoint"]}, open(path, "w"))
    return result["checkpoint"]


def morec_pretrained():
    from recbole_ext.data import morec_data
    from recbole_ext.quick_start import run_recbole

    path = os.path.join(WORK, "morec_pretrained.json")
    if os.path.exists(path) and os.path.exists(json.load(open(path))["checkpoint"]):
        return json.load(open(path))["checkpoint"]
    morec_data.prepare_ml100k(os.path.join(WORK, "dataset"))
    config = {**QUIET, "data_path": os.path.join(WORK, "dataset"), "epochs": 10, "eval_step": 5,
              "train_batch_size": 2048, "eval_batch_size": 8192, "checkpoint_dir": os.path.join(WORK, "morec_pre")}
    result = run_recbole("BPR", "ml-100k-morec", config_file_list=[MOREC_YAML], config_dict=config, cmd_args=[])
    json.dump({"checkpoint": result["checkpoint"]}, open(path, "w"))
    return result["checkpoint"]


def train_rows_per_epoch(method, config):
    """Rows one epoch trains on, over all processes."""
    if method == "BaM_REMI":
        return config["iters_per_epoch"] * config["train_batch_size"]
    if method == "CaliTune":  # one row = one user's candidate list
        return 943
    if method == "MoRec":  # the sampler's epoch: ceil(train rows / batch) x (objectives + 1) sub-batches
        import math

        from recbole_ext import Config
        from recbole_ext.utils import create_dataset, data_preparation

        morec_pretrained()
        cfg = Config("BPR", "ml-100k-morec", config_file_list=[MOREC_YAML], config_dict={**QUIET, **config},
                     cmd_args=[])
        train, _, _ = data_preparation(cfg, create_dataset(cfg))
        n_parts = len(cfg["morec_objectives"]) + 1
        return math.ceil(len(train._dataset) / config["train_batch_size"]) * config["train_batch_size"] * n_parts
    from recbole_ext import Config
    from recbole_ext.utils import create_dataset, data_preparation

    cfg = Config(method, "ml-100k", config_file_list=METHODS[method]["files"], config_dict={**QUIET, **config},
                 cmd_args=[])
    train, _, _ = data_preparation(cfg, create_dataset(cfg))
    return len(train._dataset)


def run_one(method, seed, nproc):
    import torch

    from recbole_ext.quick_start import launch
    from recbole_ext.quick_start import run_recbole

    spec = METHODS[method]
    config = {**QUIET, **spec["config"], spec.get("seed_key", "seed"): seed}
    model = spec.get("model", method)
    if method == "CaliTune":
        config["pretrained_model_file"] = backbone_checkpoint()
    if method == "MoRec":
        config["pretrained_model_file"] = morec_pretrained()
    dataset = spec.get("dataset", "ml-100k")
    if nproc == 1:
        torch.set_num_threads(1)  # as each of the 2 processes: throughput per process compares like with like
        result = run_recbole(model, dataset, config_file_list=spec["files"], config_dict=config, cmd_args=[])
        result = {k: v for k, v in result.items() if k != "config"}
    else:
        results = launch(model, dataset, nproc=nproc, config_dict=config, config_file_list=spec["files"])
        assert len({r["model_digest"] for r in results}) == 1, "replicas diverged"
        result = results[0]
    return {"test": result["test_result"], "train_seconds": result["train_seconds"]}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args(argv)
    import recbole_ext  # noqa: F401
    from benchmarks._report import markdown_table, write_section

    os.makedirs(WORK, exist_ok=True)
    rows, raw = [], {}
    for method in args.methods:
        rows_epoch = train_rows_per_epoch(method, METHODS[method]["config"])
        runs = {1: [], 2: []}
        for seed in args.seeds:
            for nproc in (1, 2):
                start = time.perf_counter()
                run = run_one(method, seed, nproc)
                print(f"{method} seed {seed} nproc {nproc}: {run['test']} ({time.perf_counter() - start:.1f}s)",
                      flush=True)
                runs[nproc].append(run)
        raw[method] = runs
        metrics = list(runs[1][0]["test"])
        epochs = METHODS[method]["config"]["epochs"]
        for nproc in (1, 2):
            row = {"method": method, "processes": nproc, "runs": len(runs[nproc])}
            for m in metrics:
                values = [r["test"][m] for r in runs[nproc]]
                sd = statistics.stdev(values) if len(values) > 1 else 0.0
                row[m] = f"{statistics.mean(values):.4f} ± {sd:.4f}"
            secs = statistics.mean(r["train_seconds"] for r in runs[nproc])
            row["fit s"] = round(secs, 1)
            row["rows/s per process"] = round(epochs * rows_epoch / nproc / secs)
            rows.append(row)
        diffs = {m: max(abs(a["test"][m] - b["test"][m]) for a, b in zip(runs[1], runs[2])) for m in metrics}
        mean_diffs = {m: abs(statistics.mean(r["test"][m] for r in runs[1])
                             - statistics.mean(r["test"][m] for r in runs[2])) for m in metrics}
        noise = {m: max(statistics.stdev([r["test"][m] for r in runs[1]]) if len(runs[1]) > 1 else 0.0,
                        statistics.stdev([r["test"][m] for r in runs[2]]) if len(runs[2]) > 1 else 0.0)
                 for m in metrics}
        rows.append({"method": method, "processes": "diff 1p-2p (means; max paired)", "runs": "",
                     **{m: f"{mean_diffs[m]:.4f}; {diffs[m]:.4f} (sd {noise[m]:.4f})" for m in metrics}})
    json.dump(raw, open(os.path.join(WORK, "raw.json"), "w"), indent=1)
    tables = []
    for method in args.methods:
        mine = [r for r in rows if r["method"] == method]
        metric_cols = [k for k in mine[0] if k not in ("method", "processes", "runs", "fit s", "rows/s per process")]
        columns = ["processes", "runs"] + metric_cols + ["fit s", "rows/s per process"]
        tables.append(f"**{method}**\n\n" + markdown_table(mine, columns))
    body = (
        f"ml-100k, seeds {args.seeds}: every method run once per seed in 1 process and in 2 processes "
        "(Gloo DDP), 1 torch thread per process in both. Test metrics: mean ± sd over seeds. The 'diff' row: "
        "absolute difference of the means; largest absolute difference of seed-paired runs; (sd: the larger "
        "run-to-run sd of the two settings). In every 2-process run both replicas ended with bit-identical "
        "parameters (checked). 'fit s': run_recbole's train_seconds (training + per-epoch validation), mean "
        "over seeds; 'rows/s per process': training rows (BPR: interactions, BaM: sampled rows, CaliTune: "
        "users, MoRec: sampled sub-batch rows) per second per process over that fit. MoRec: BPR pretrained once "
        "(10 epochs) on ml-100k-morec, `seed` varies the sampler and negatives (leave-one-out split). "
        "CaliTune: one BPR backbone (seed 2020, 20 epochs), "
        "the seed varied is calitune_seed. Shared 2-core machine: other jobs may have run at the same "
        "time, so timings are indicative.\n\n"
        + "\n\n".join(tables)
    )
    write_section("Distributed", body)
    print(body)


if __name__ == "__main__":
    main()
