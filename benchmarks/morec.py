"""MoRec benchmark on ml-100k (prepared with SYNTHETIC seeded prices; fair group = first genre,
align group = 10 popularity bins).

1. pretrain BPR with RecBole's normal trainer (early stopping on NDCG@10);
2. from that checkpoint: MoRec PID, MoRec Static, and a control that continues with the plain
   trainer for the same number of epochs;
3. test metrics @10 of every model and training seconds per epoch; writes the "MoRec" section of
   BENCHMARKS.md;
4. issue 14, the effect of each faithful default against its option: pop-kl of the pretrained model
   under each aggregation and full-sort batch size, p* on train + valid vs train only, and MoRec with
   RecBole's early stopping switched on (``--es-stopping-step``).

    python benchmarks/morec.py [--pretrain-epochs 40] [--epochs 10] [--batch-size 2048] [--threads 1]
                               [--es-stopping-step 0]
    python benchmarks/morec.py --seeds 2020,2021,2022 [--pretrain-epochs 40] [--epochs 10]

``--seeds`` writes the "MoRec over seeds" section instead: for every seed (RecBole's ``seed``: BPR's
initialisation, negatives, batching and MoRec's sampler; the leave-one-out split is by time, so the same for
every seed) pretrain BPR, then run the plain-trainer control, MoRec PID and MoRec Static from it; report each
metric's mean ± sd and 95 % Student-t interval over seeds, the goals per seed, and the seed-paired
differences of MoRec against the plain control with their intervals (a difference whose interval holds 0 is a
tie).
"""

import argparse
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import recbole_ext  # noqa: E402,F401
from benchmarks._report import markdown_table, write_section  # noqa: E402
from recbole.utils import init_logger, init_seed  # noqa: E402
from recbole_ext import checkpoint as ckpt  # noqa: E402
from recbole_ext import stats  # noqa: E402
from recbole_ext.config import Config  # noqa: E402
from recbole_ext.data.morec_data import prepare_ml100k  # noqa: E402
from recbole_ext.quick_start import build_model_and_trainer  # noqa: E402
from recbole_ext.utils import create_dataset, data_preparation  # noqa: E402

YAML = os.path.join(ROOT, "properties", "morec_ml-100k.yaml")
METRICS = ["hit@10", "ndcg@10", "rhit@10", "rndcg@10", "popkl@10", "minhit@10", "minndcg@10", "minrhit@10"]


def run(extra, pretrained=None):
    """Train one configuration; return (test result, seconds per training epoch, epochs, trainer)."""
    config = Config("BPR", "ml-100k-morec", [YAML], {"show_progress": False, "state": "WARNING", **extra})
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model, trainer = build_model_and_trainer(config, train)
    if pretrained and config["trainer"] is None:  # plain-trainer control continues from the checkpoint
        ckpt.restore_model(model, ckpt.load_checkpoint(pretrained))
    seconds = []
    original = trainer._train_epoch

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
        return out

    trainer._train_epoch = timed
    trainer.fit(train, valid, saved=True, show_progress=False)
    result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    return {k: float(v) for k, v in result.items()}, sum(seconds) / len(seconds), len(seconds), trainer


def evaluate_pretrained(path, extra):
    """Test metrics of the checkpoint ``path`` under evaluation settings ``extra`` (no training)."""
    config = Config("BPR", "ml-100k-morec", [YAML], {"show_progress": False, "state": "WARNING", **extra})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, _, test = data_preparation(config, dataset)
    _, trainer = build_model_and_trainer(config, train)
    trainer.collect_train_data(train)
    result = trainer.evaluate(test, model_file=path, show_progress=False)
    return {k: float(v) for k, v in result.items()}, test.step, dataset.item_num


def popkl_rows(path):
    """Pretrained model's test pop-kl@10 by aggregation and users per full-sort batch (RecBole's batching,
    eval_block_mb 0, so eval_batch_size sets the batch), and by the counts behind p*."""
    rows = []
    _, _, n_items = evaluate_pretrained(path, {})
    for aggregate, users in [("block", 4), ("block", 64), ("batch", 4), ("batch", 64), ("batch", 100), ("global", 4)]:
        for counts in ("train_valid", "train"):
            result, step, _ = evaluate_pretrained(path, {"eval_block_mb": 0, "eval_batch_size": users * n_items,
                                                         "metric_decimal_place": 6,
                                                         "morec_popkl_aggregate": aggregate,
                                                         "morec_align_counts": counts})
            rows.append({"morec_popkl_aggregate": aggregate, "users per eval batch": step,
                         "morec_align_counts": counts, "popkl@10": f"{result['popkl@10']:.6f}"})
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pretrain-epochs", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--es-stopping-step", type=int, default=0,
                        help="stopping_step of the 'morec_early_stop: true' run (the default runs every epoch)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds: write the 'MoRec over seeds' section")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.seeds:
        return seeds_main(args, [int(s) for s in args.seeds.split(",")])
    sys.argv[0] = os.path.abspath(sys.argv[0])  # the report names the script relative to the repository
    work = tempfile.mkdtemp(prefix="morec-bench-")
    os.chdir(work)
    prepare_ml100k("dataset")
    common = {"train_batch_size": args.batch_size, "checkpoint_dir": "saved", "results_dir": "saved/results"}

    pre_result, pre_s, pre_epochs, pre_trainer = run({**common, "epochs": args.pretrain_epochs, "stopping_step": 5})
    path = pre_trainer.saved_model_file
    rows = [{"model": f"BPR pretrained ({pre_epochs} ep, best kept)", **pre_result, "s/epoch": pre_s}]
    runs = [
        ("plain trainer, continued", {"epochs": args.epochs, "stopping_step": args.epochs}),
        ("MoRec PID", {"trainer": "MoRec", "pretrained_model_file": path, "epochs": args.epochs}),
        ("MoRec Static [.1,.1,.1,.7]", {"trainer": "MoRec", "pretrained_model_file": path, "epochs": args.epochs,
                                        "morec_objective_controller": "Static",
                                        "morec_objective_weights": "[0.1,0.1,0.1,0.7]"}),
        # issue 14 options (the rows above use the faithful defaults)
        ("MoRec PID, morec_align_counts: train", {"trainer": "MoRec", "pretrained_model_file": path,
                                                  "epochs": args.epochs, "morec_align_counts": "train"}),
        (f"MoRec PID, morec_early_stop: true, stopping_step {args.es_stopping_step}",
         {"trainer": "MoRec", "pretrained_model_file": path, "epochs": args.epochs, "morec_early_stop": True,
          "stopping_step": args.es_stopping_step}),
    ]
    trajectories = []
    for name, extra in runs:
        result, s, n, trainer = run({**common, **extra}, pretrained=path)
        rows.append({"model": f"{name} (+{n} ep)", **result, "s/epoch": s})
        if getattr(trainer, "trajectory_path", None):
            trajectories.append((name, trainer.morec_history))
    for row in rows:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})

    popkl_table = popkl_rows(path)
    for row in popkl_table:
        print(row)
    pre = rows[0]
    lines = []
    for row in rows[2:4]:
        checks = {
            "pop-kl at least halved": row["popkl@10"] <= 0.5 * pre["popkl@10"],
            "min-hit up": row["minhit@10"] > pre["minhit@10"],
            "rhit up": row["rhit@10"] > pre["rhit@10"],
            "hit@10 >= 95% of pretrained": row["hit@10"] >= 0.95 * pre["hit@10"],
        }
        lines.append(f"- {row['model']}: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items()))
    beta_lines = []
    for name, history in trajectories[:2]:
        betas = [f"{e['beta_mean']:.3f}" for e in history if e.get("beta_mean") is not None]
        popkl = [f"{e['valid']['popkl@10']:.3f}" for e in history if "valid" in e]
        beta_lines.append(f"- {name}: beta per epoch {', '.join(betas)}; valid pop-kl@10 per epoch (first = "
                          f"pretrained) {', '.join(popkl)}")
    body = (
        "ml-100k prepared by `recbole_ext.data.morec_data.prepare_ml100k` (rating >= 3, 10-core, 939 users, "
        "1016 items, leave-one-out by time): fairness group = first genre (9 most frequent + Miscellaneous), "
        "alignment group = 10 popularity bins, **price = synthetic** seeded U(20, 100) — rhit / rndcg are "
        "illustrative only. Config `properties/morec_ml-100k.yaml` (BPR, dim 64, lr 0.01, batch "
        f"{args.batch_size}, 1 uniform negative; MoRec: objectives fairness, alignment, revenue, ngroup 10, "
        "alpha 0.1, lambda 0.2, L* 0.2, beta 0.6-1.3, K_p 0.01, K_i 0.001, weights [0.3,0.3,0.4], alignment "
        "top-K 10). Test split, full ranking, metrics @10 (recbole_ext names: popkl = pop-kl, minhit = "
        "min-hit, ...). s/epoch = training seconds per epoch (MoRec: includes its validation-signal pass; "
        "each MoRec step processes 4 x batch rows); "
        f"{args.threads} torch thread(s) on a shared machine, so timings are indicative. Defaults as UniRec "
        "(issue 14): MoRec runs every epoch and tests the model after the last one (`morec_early_stop: false`, "
        "`morec_select: last`), p* = alignment-group share over train + valid histories (`morec_align_counts: "
        "train_valid`), pop-kl = mean over blocks of 100 users in user order (`morec_popkl_aggregate: block`). "
        "The last two MoRec rows switch one option each.\n\n"
        + markdown_table(rows, ["model"] + METRICS + ["s/epoch"])
        + "\n\nGoals (vs. the pretrained model; one seed, so these lines are not evidence on their own — the "
        "section \"MoRec over seeds\" gives the intervals: pop-kl lowered is established, the accuracy, min-hit and "
        "revenue differences are ties):\n" + "\n".join(lines)
        + "\n\nTrajectories:\n" + "\n".join(beta_lines)
        + "\n\npop-kl@10 of the pretrained model (test) by aggregation, users per full-sort batch (RecBole's "
        "batching: `eval_block_mb: 0`, `eval_batch_size` = users x item_num) and the counts behind p* "
        "(`morec_align_counts`): `block` (default) does not move with the batch size; `batch` (the default "
        "before issue 14) does, and equals `block` at 100 users per batch (UniRec's test_batch_size).\n\n"
        + markdown_table(popkl_table,
                         ["morec_popkl_aggregate", "users per eval batch", "morec_align_counts", "popkl@10"])
    )
    write_section("MoRec", body)
    print(body)


SEED_RUNS = [
    ("plain trainer, continued", {}),
    ("MoRec PID", {"trainer": "MoRec"}),
    ("MoRec Static [.1,.1,.1,.7]", {"trainer": "MoRec", "morec_objective_controller": "Static",
                                    "morec_objective_weights": "[0.1,0.1,0.1,0.7]"}),
]
SEED_METRICS = ["hit@10", "ndcg@10", "popkl@10", "minhit@10", "minndcg@10", "rhit@10"]


def goals(row, pre):
    return {
        "pop-kl at least halved": row["popkl@10"] <= 0.5 * pre["popkl@10"],
        "min-hit up": row["minhit@10"] > pre["minhit@10"],
        "rhit up": row["rhit@10"] > pre["rhit@10"],
        "hit@10 >= 95% of pretrained": row["hit@10"] >= 0.95 * pre["hit@10"],
    }


def _ci_text(values):
    ci = stats.mean_ci(values)
    return f"{ci.mean:.4f} ± {ci.sd:.4f} [{ci.lo:.4f}, {ci.hi:.4f}]"


def _verdict(values):
    ci = stats.mean_ci(values)
    return "tie (interval holds 0)" if ci.lo <= 0 <= ci.hi else ("higher" if ci.lo > 0 else "lower")


def seeds_main(args, seeds):
    """Pretrain + control + MoRec PID / Static for every seed; the 'MoRec over seeds' section."""
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise SystemExit("--seeds needs at least two distinct seeds")
    start = time.perf_counter()
    work = tempfile.mkdtemp(prefix="morec-seeds-")
    os.chdir(work)
    prepare_ml100k("dataset")
    results = {}  # name -> list of per-seed results
    goal_lines = []
    for seed in seeds:
        common = {"train_batch_size": args.batch_size, "checkpoint_dir": f"saved/{seed}",
                  "results_dir": f"saved/{seed}/results", "seed": seed}
        pre, _, pre_epochs, pre_trainer = run({**common, "epochs": args.pretrain_epochs, "stopping_step": 5})
        path = pre_trainer.saved_model_file
        results.setdefault("BPR pretrained (best kept)", []).append(pre)
        for name, extra in SEED_RUNS:
            extra = {**common, "epochs": args.epochs, **extra}
            if "trainer" in extra:
                extra["pretrained_model_file"] = path
            else:
                extra["stopping_step"] = args.epochs
            result, _, _, _ = run(extra, pretrained=path)
            results.setdefault(name, []).append(result)
            if name != SEED_RUNS[0][0]:
                checks = goals(result, pre)
                goal_lines.append(f"- seed {seed}, {name}: " + ", ".join(
                    f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items()))
        print(f"seed {seed} done ({pre_epochs} pretraining epochs)", flush=True)
    rows = []
    for name, per_seed in results.items():
        row = {"model": name}
        for metric in SEED_METRICS:
            row[metric] = _ci_text([r[metric] for r in per_seed])
        rows.append(row)
    control = results[SEED_RUNS[0][0]]
    pre = results["BPR pretrained (best kept)"]
    diff_rows = []
    for name, _ in SEED_RUNS[1:]:
        for metric in SEED_METRICS:
            d = [a[metric] - b[metric] for a, b in zip(results[name], control)]
            diff_rows.append({"comparison": f"{name} − plain control", "metric": metric, "per seed": ", ".join(
                f"{v:+.4f}" for v in d), "mean [95% CI]": _ci_text(d), "verdict": _verdict(d)})
        ratio = [a["popkl@10"] / b["popkl@10"] for a, b in zip(results[name], pre)]
        ci = stats.mean_ci(ratio)
        diff_rows.append({"comparison": f"{name} / pretrained", "metric": "popkl@10 ratio", "per seed": ", ".join(
            f"{v:.3f}" for v in ratio), "mean [95% CI]": _ci_text(ratio),
            "verdict": "at least halved" if ci.hi <= 0.5 else "not established"})
    per_seed_rows = [{"model": name, "seed": seed, **{m: r[m] for m in SEED_METRICS}}
                     for name, per_seed in results.items() for seed, r in zip(seeds, per_seed)]
    minutes = (time.perf_counter() - start) / 60
    body = (
        f"Seeds {', '.join(map(str, seeds))} (n = {len(seeds)}). Per seed: BPR pretrained on ml-100k-morec "
        f"(<= {args.pretrain_epochs} epochs, early stop 5, best kept), then from that checkpoint the plain trainer "
        f"(+{args.epochs} epochs), MoRec PID and MoRec Static (+{args.epochs} epochs each), settings as in the "
        "section \"MoRec\". The seed varies BPR's initialisation, negatives and batches and MoRec's sampler; the "
        "leave-one-out split (by time) and the synthetic prices are the same for every seed. Cells: mean ± sd "
        "[95 % Student-t interval over seeds]. Differences are seed-paired (same pretrained model); a difference "
        f"whose interval holds 0 is a tie. Total {minutes:.1f} min on a shared 2-core machine, "
        f"{args.threads} torch thread(s).\n\n"
        + markdown_table(rows, ["model"] + SEED_METRICS)
        + "\n\nMoRec against the plain control (seed-paired) and pop-kl against the pretrained model:\n\n"
        + markdown_table(diff_rows, ["comparison", "metric", "per seed", "mean [95% CI]", "verdict"])
        + "\n\nGoals per seed (vs. that seed's pretrained model):\n" + "\n".join(goal_lines)
        + "\n\nPer-seed values:\n\n" + markdown_table(per_seed_rows, ["model", "seed"] + SEED_METRICS)
    )
    write_section("MoRec over seeds", body)
    print(body)


if __name__ == "__main__":
    main()
