"""MoRec benchmark on ml-100k (prepared with SYNTHETIC seeded prices; fair group = first genre,
align group = 10 popularity bins).

1. pretrain BPR with RecBole's normal trainer (early stopping on NDCG@10);
2. from that checkpoint: MoRec PID, MoRec Static, and a control that continues with the plain
   trainer for the same number of epochs;
3. test metrics @10 of every model and training seconds per epoch; writes the "MoRec" section of
   BENCHMARKS.md.

    python benchmarks/morec.py [--pretrain-epochs 40] [--epochs 10] [--batch-size 2048] [--threads 1]
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pretrain-epochs", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
    ]
    trajectories = []
    for name, extra in runs:
        result, s, n, trainer = run({**common, **extra}, pretrained=path)
        rows.append({"model": f"{name} (+{n} ep)", **result, "s/epoch": s})
        if getattr(trainer, "trajectory_path", None):
            trajectories.append((name, trainer.morec_history))
    for row in rows:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})

    pre = rows[0]
    lines = []
    for row in rows[2:]:
        checks = {
            "pop-kl at least halved": row["popkl@10"] <= 0.5 * pre["popkl@10"],
            "min-hit up": row["minhit@10"] > pre["minhit@10"],
            "rhit up": row["rhit@10"] > pre["rhit@10"],
            "hit@10 >= 95% of pretrained": row["hit@10"] >= 0.95 * pre["hit@10"],
        }
        lines.append(f"- {row['model']}: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items()))
    beta_lines = []
    for name, history in trajectories:
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
        f"{args.threads} torch thread(s) on a shared machine, so timings are indicative.\n\n"
        + markdown_table(rows, ["model"] + METRICS + ["s/epoch"])
        + "\n\nGoals (vs. the pretrained model):\n" + "\n".join(lines)
        + "\n\nTrajectories:\n" + "\n".join(beta_lines)
    )
    write_section("MoRec", body)
    print(body)


if __name__ == "__main__":
    main()
