"""PeterRec benchmark: scratch vs head vs full vs PeterRec serial / parallel on ml-100k target tasks.

    python benchmarks/peterrec.py [--tasks gender,age,coldrec] [--pretrain_epochs 20] [--finetune_epochs 30]
        [--modes scratch,head,full,patch:serial,patch:parallel] [--patch_init faithful,near_identity]
        [--attribute_user_vector mean,mean_with_padding]

1. writes the target tasks (recbole_ext.data.peterrec_data) into a temporary data_path;
2. pretrains a NextItNetP backbone through run_recbole on ml-100k (attribute tasks) and on the cold-start source
   dataset ``ml-100k-cold-src`` (item transfer task);
3. fine-tunes PeterRec in every mode on every task (same seed, same split) and reports the test metric (exact top-1
   accuracy ``hit@1`` for attribute tasks; sampled HR@5 / MRR@5 with 99 negatives for the item task), trainable
   parameters (without / with the target table), their share of the backbone's conv + LayerNorm parameters, and
   seconds per training epoch. Also the majority-class accuracy of each attribute test split.
   ``--patch_init`` and ``--attribute_user_vector`` take comma-separated lists: every patch mode is run with each
   patch initialisation, every attribute-task run with each user vector (same backbone, seed and split).

Writes the "PeterRec" section of BENCHMARKS.md (unless --no_write).
"""

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import recbole_ext  # noqa: E402,F401
from benchmarks._report import markdown_table, write_section  # noqa: E402
from recbole_ext.config import Config  # noqa: E402
from recbole_ext.data import peterrec_data as pdata  # noqa: E402
from recbole_ext.quick_start import build_model_and_trainer, run_recbole  # noqa: E402
from recbole_ext.utils import create_dataset, data_preparation  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

MODES = "scratch,head,full,patch:serial,patch:parallel"
QUIET = {"show_progress": False, "state": "WARNING", "log_wandb": False}


def pretrain(dataset, data_path, args, workdir):
    cfg = dict(QUIET, data_path=data_path, epochs=args.pretrain_epochs, embedding_size=args.channels,
               dilations=args.dilations, MAX_ITEM_LIST_LENGTH=args.max_len, train_batch_size=64,
               eval_batch_size=2048, metrics=["Hit", "MRR"], topk=[10], valid_metric="MRR@10", stopping_step=3,
               checkpoint_dir=os.path.join(workdir, "saved"), results_dir=os.path.join(workdir, "results"))
    if dataset != "ml-100k":
        cfg["load_col"] = {"inter": ["user_id", "item_id", "rating", "timestamp"]}
    start = time.perf_counter()
    if args.pretrain_last_epoch:
        cfg["eval_step"] = 0  # no validation: the checkpoint is the last epoch's
    backbone = args.backbone if dataset == "ml-100k" else "NextItNetP"  # attribute tasks' source: ml-100k
    result = run_recbole(backbone, dataset, config_dict=cfg)
    return result, time.perf_counter() - start


def parse_modes(text):
    """``"full,patch:serial"`` -> ``[("full", "serial"), ("patch", "serial")]`` (insertion matters for patch only)."""
    pairs = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        mode, _, insertion = item.partition(":")
        pairs.append((mode, insertion or "serial"))
    return pairs


def finetune(task, data_path, checkpoint, mode, insertion, args, workdir, user_vector="auto", patch_init="faithful"):
    attribute = task in pdata.ATTRIBUTES
    cfg = dict(QUIET, data_path=data_path, pretrained_model_file=checkpoint, peterrec_mode=mode,
               peterrec_insertion=insertion, epochs=args.finetune_epochs, stopping_step=args.stopping_step,
               learning_rate=args.lr, embedding_size=args.channels, dilations=args.dilations,
               checkpoint_dir=os.path.join(workdir, "saved"), seed=args.seed, peterrec_patch_init=patch_init)
    if attribute:
        cfg.update(peterrec_eval="full", metrics=["Hit"], topk=[1], valid_metric="Hit@1",
                   train_batch_size=args.attribute_batch, peterrec_user_vector=user_vector)
    else:
        cfg.update(peterrec_eval="sampled", metrics=["Hit", "MRR"], topk=[5], valid_metric="MRR@5")
    config = Config("PeterRec", task_name(task), config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    model, trainer = build_model_and_trainer(config, train_data)
    start = time.perf_counter()
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    seconds = time.perf_counter() - start
    epochs_run = max(1, len(getattr(trainer, "train_loss_dict", {})) or 1)
    test = trainer.evaluate(test_data, load_best_model=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    head = model.target_embedding.weight.numel()
    backbone = sum(p.numel() for n, p in model.encoder.blocks.named_parameters() if ".mp" not in n)
    row = {
        "task": task,
        "method": "PeterRec " + insertion if mode == "patch" else mode,
        "user vector": user_vector if attribute else "",
        "patch init": patch_init if mode == "patch" else "",
        "trainable (no head)": trainable - head,
        "trainable (with head)": trainable,
        "share of backbone": f"{100.0 * (trainable - head) / backbone:.1f}%",
        "s/epoch": round(seconds / epochs_run, 2),
        "epochs": epochs_run,
    }
    row.update({k: v for k, v in test.items()})
    if attribute:
        labels = test_data._dataset.inter_feat[config["ITEM_ID_FIELD"]]
        row["majority"] = float(torch.bincount(labels).max()) / len(labels)
    return row


def load_note():
    """Shared 2-core machine: the load average qualifies every timing (s/epoch, seconds)."""
    try:
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        return ""
    return (f"Load average at the end of the run: {' / '.join(load)} (1 / 5 / 15 min) on {os.cpu_count()} cores; "
            "other jobs may have shared the machine, so timings are indicative.")


def task_name(task):
    return f"ml-100k-{task}" if task in pdata.ATTRIBUTES else "ml-100k-cold"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="gender,age,coldrec")
    parser.add_argument("--pretrain_epochs", type=int, default=20)
    parser.add_argument("--finetune_epochs", type=int, default=30)
    parser.add_argument("--stopping_step", type=int, default=5)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--dilations", default="[1,4,1,4,1,4,1,4]")
    parser.add_argument("--max_len", type=int, default=50, help="pretraining window and item-task history")
    parser.add_argument("--attribute_len", type=int, default=50, help="history length of the attribute tasks")
    parser.add_argument("--backbone", default="NextItNetP", choices=["NextItNetP", "GRec"],
                        help="backbone pretrained on ml-100k for the attribute tasks")
    parser.add_argument("--pretrain_last_epoch", action="store_true", help="keep the last pretraining epoch")
    parser.add_argument("--attribute_batch", type=int, default=512)
    parser.add_argument("--attribute_user_vector", default="auto",
                        help="user vector(s) of the attribute tasks, comma-separated (e.g. mean,mean_with_padding)")
    parser.add_argument("--modes", default=MODES, help="fine-tuning modes, comma-separated; patch:serial / patch:parallel")
    parser.add_argument("--patch_init", default="faithful",
                        help="patch initialisation(s) of the patch modes, comma-separated (faithful,near_identity)")
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no_write", action="store_true")
    parser.add_argument("--section", default="PeterRec", help="BENCHMARKS.md section to (re)write")
    args = parser.parse_args(argv)
    args.dilations = [int(d) for d in args.dilations.strip("[]").split(",")]
    torch.set_num_threads(args.threads)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    user_vectors = [v.strip() for v in args.attribute_user_vector.split(",") if v.strip()]
    patch_inits = [v.strip() for v in args.patch_init.split(",") if v.strip()]
    workdir = tempfile.mkdtemp(prefix="peterrec-bench-")
    data_path = os.path.join(workdir, "data")
    for task in tasks:
        if task in pdata.ATTRIBUTES:
            pdata.write_attribute_task(data_path, task, max_source_len=args.attribute_len)
        elif task == "coldrec":
            pdata.write_coldrec_task(data_path, max_source_len=args.max_len)
        else:
            raise SystemExit(f"unknown task {task}")
    rows, pre_rows, backbones = [], [], {}
    for source in sorted({"ml-100k" if t in pdata.ATTRIBUTES else "ml-100k-cold-src" for t in tasks}):
        result, seconds = pretrain(source, data_path, args, workdir)
        backbones[source] = result["checkpoint"]
        pre_rows.append({"source dataset": source, "test hit@10": result["test_result"]["hit@10"],
                         "test mrr@10": result["test_result"]["mrr@10"], "seconds": round(seconds, 1)})
        print(pre_rows[-1], flush=True)
    for task in tasks:
        ckpt = backbones["ml-100k" if task in pdata.ATTRIBUTES else "ml-100k-cold-src"]
        vectors = user_vectors if task in pdata.ATTRIBUTES else ["auto"]
        for mode, insertion in parse_modes(args.modes):
            for user_vector in vectors:
                for patch_init in (patch_inits if mode == "patch" else ["faithful"]):
                    rows.append(finetune(task, data_path, ckpt, mode, insertion, args, workdir, user_vector, patch_init))
                    print(rows[-1], flush=True)
    metric_cols = sorted({k for r in rows for k in r if "@" in k})
    varied = [c for c, values in (("user vector", user_vectors), ("patch init", patch_inits)) if len(values) > 1]
    columns = ["task", "method"] + varied + metric_cols + ["majority", "trainable (no head)", "trainable (with head)",
                                                  "share of backbone", "s/epoch", "epochs"]
    body = (
        f"Backbones: {args.backbone} pretrained on ml-100k (attribute tasks), NextItNetP on the cold-start source "
        f"(item task); C = {args.channels}, dilations {args.dilations}, pretraining window {args.max_len}, "
        f"{args.pretrain_epochs} pretraining epochs "
        f"({'no validation, last epoch kept' if args.pretrain_last_epoch else 'early stop 3 on valid MRR@10'}). "
        f"Attribute tasks: history {args.attribute_len}, batch {args.attribute_batch}, user vector "
        f"`{args.attribute_user_vector}` (`mean`: over the real source positions; `mean_with_padding`: over every "
        f"position of the left-padded row). Patch initialisation `{args.patch_init}` (`faithful`: truncated-normal "
        f"up-projection, parallel branch with the extra identity P5; `near_identity`: zero up-projection, parallel "
        f"branch = bottleneck only). Fine-tuning: lr {args.lr}, up to "
        f"{args.finetune_epochs} epochs, early stop {args.stopping_step} on the validation metric, seed {args.seed}, "
        "split 70/10/20 of the examples. Attribute tasks: exact top-1 accuracy (`hit@1`, all classes); "
        "item task (held-out genres Horror / Film-Noir / Documentary / Western, <= 5 earliest target items per user): "
        "the paper's sampled HR@5 / MRR@5 (99 negatives with replacement, ties against the positive). "
        "`share of backbone` = trainable parameters without the target table / conv + LayerNorm parameters of the "
        "backbone. " + load_note() + "\n\nPretraining:\n\n" + markdown_table(pre_rows, list(pre_rows[0])) + "\n\nFine-tuning (test split):\n\n"
        + markdown_table(rows, [c for c in columns if any(c in r for r in rows)])
    )
    print(body)
    if not args.no_write:
        write_section(args.section, body)


if __name__ == "__main__":
    main()
