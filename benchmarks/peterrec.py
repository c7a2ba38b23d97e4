"""PeterRec benchmark: scratch vs head vs full vs PeterRec serial / parallel on ml-100k target tasks.

    python benchmarks/peterrec.py [--tasks gender,age,coldrec] [--pretrain_epochs 20] [--finetune_epochs 30]
        [--modes scratch,head,full,patch:serial,patch:parallel] [--patch_init faithful,near_identity]
        [--attribute_user_vector mean,mean_with_padding] [--seeds 2020,2021,2022] [--runs_file F]

1. writes the target tasks (recbole_ext.data.peterrec_data) into a temporary data_path;
2. pretrains a NextItNetP backbone through run_recbole on ml-100k (attribute tasks) and on the cold-start source
   dataset ``ml-100k-cold-src`` (item transfer task);
3. fine-tunes PeterRec in every mode on every task (same seed, same split) and reports the test metric (exact top-1
   accuracy ``hit@1`` for attribute tasks; sampled HR@5 / MRR@5 with 99 negatives for the item task), trainable
   parameters (without / with the target table), their share of the backbone's conv + LayerNorm parameters, and
   seconds per training epoch. Also the majority-class accuracy of each attribute test split.
   ``--patch_init`` and ``--attribute_user_vector`` take comma-separated lists: every patch mode is run with each
   patch initialisation, every attribute-task run with each user vector (same backbone, seed and split).
4. with ``--seeds 2020,2021,2022`` (>= 3): every fine-tuning run is repeated per seed on the same pretrained backbone
   (pretrained once, configuration seed 2020); the seed varies initialisation, batching, negatives, sampled candidates
   and the 70/10/20 split. Adds mean ± sd and the 95 % t-interval over seeds, per-seed values, for attribute tasks the
   exact one-sided binomial test of the correct test users against the majority share and the exact McNemar test
   against the majority guess, and paired per-user comparisons of the methods on each split (per-user values
   recomputed from the fine-tuned model and checked against the trainer's means). ``--runs_file`` keeps finished runs
   (JSON lines) so an interrupted benchmark resumes; ``--attribute_checkpoint`` reuses an attribute-task backbone.

Writes the "PeterRec" section of BENCHMARKS.md (unless --no_write).
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
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


def finetune(task, data_path, checkpoint, mode, insertion, args, workdir, user_vector="auto", patch_init="faithful",
             seed=None):
    attribute = task in pdata.ATTRIBUTES
    cfg = dict(QUIET, data_path=data_path, pretrained_model_file=checkpoint, peterrec_mode=mode,
               peterrec_insertion=insertion, epochs=args.finetune_epochs, stopping_step=args.stopping_step,
               learning_rate=args.lr, embedding_size=args.channels, dilations=args.dilations,
               checkpoint_dir=os.path.join(workdir, "saved"), seed=args.seed if seed is None else seed,
               peterrec_patch_init=patch_init)
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
    per = per_example(trainer, test_data, test)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    head = model.target_embedding.weight.numel()
    backbone = sum(p.numel() for n, p in model.encoder.blocks.named_parameters() if ".mp" not in n)
    row = {
        "seed": config["seed"],
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
        counts = torch.bincount(labels)
        row["majority"] = float(counts.max()) / len(labels)
        # the majority guess of the test split (the "majority" share): correct for every user of that class
        per["majority_correct"] = (labels == int(counts.argmax())).double().numpy()
    return row, per


def per_example(trainer, test_data, test):
    """Per-example metric values of the fine-tuned (best) model on the test split, with the user of each example.

    Recomputed with the trainer's own pieces (same candidate generator seeded with ``seed``, same batching, same
    tie rule) because PeterRecTrainer.evaluate returns means only; the means are checked against ``test``."""
    from recbole_ext.trainer.peterrec import rank_metrics, ranks_against, sample_negatives

    model, config = trainer.model, trainer.config
    model.eval()
    dataset = test_data._dataset
    inter = dataset.inter_feat
    n = len(inter) if trainer.max_examples is None else min(len(inter), int(trainer.max_examples))
    n_targets = model.n_items
    n_neg = n_targets - 2 if trainer.n_negatives < 0 else trainer.n_negatives
    generator = torch.Generator().manual_seed(int(config["seed"]))
    batch_size = int(config["eval_batch_size"])
    ranks = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = dataset.join(inter[np.arange(start, min(n, start + batch_size))]).to(trainer.device)
            scores = model.full_sort_predict(batch)
            pos = batch[model.ITEM_ID]
            pos_scores = scores.gather(1, pos.unsqueeze(1)).squeeze(1)
            if trainer.protocol == "sampled":
                other = scores.gather(1, sample_negatives(pos, n_targets, max(n_neg, 1), generator).to(trainer.device))
            else:
                other = scores[:, 1:].clone()
                other.scatter_(1, (pos - 1).unsqueeze(1), float("-inf"))
            ranks.append(ranks_against(pos_scores, other).cpu())
    values = {k: v.numpy() for k, v in rank_metrics(torch.cat(ranks), trainer.eval_topk, trainer.metric_names).items()}
    places = config["metric_decimal_place"]
    for key, vec in values.items():
        if abs(round(float(vec.mean()), places) - test[key]) > 10.0 ** -places:
            raise RuntimeError(f"per-example {key} of the test split averages {vec.mean():.6f} but the trainer "
                               f"reported {test[key]}: the recomputation in benchmarks/peterrec.py no longer matches "
                               "PeterRecTrainer.evaluate; update per_example()")
    users = inter[config["USER_ID_FIELD"]][:n].numpy()
    return {"users": users, "values": values}


def run_key(seed, task, mode, insertion, user_vector, patch_init):
    return f"{seed}|{task}|{mode}|{insertion}|{user_vector}|{patch_init}"


def save_run(path, key, row, per):
    """Append one finished run (JSON line: key, row, per-example values) so that a stopped benchmark can resume."""
    import json

    record = {"key": key, "row": row, "users": per["users"].tolist(),
              "values": {k: v.tolist() for k, v in per["values"].items()}}
    if "majority_correct" in per:
        record["majority_correct"] = per["majority_correct"].tolist()
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def load_runs(path):
    import json

    if not os.path.exists(path):
        return {}
    runs = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            per = {"users": np.asarray(record["users"]),
                   "values": {k: np.asarray(v, dtype=np.float64) for k, v in record["values"].items()}}
            if "majority_correct" in record:
                per["majority_correct"] = np.asarray(record["majority_correct"], dtype=np.float64)
            runs[record["key"]] = (record["row"], per)
    return runs


def parse_seeds(text):
    seeds = [int(t) for t in text.split(",") if t.strip()]
    if len(seeds) < 3 or len(set(seeds)) != len(seeds):
        raise SystemExit(f"--seeds {text!r}: give at least 3 distinct seeds (a t-interval over fewer says nothing)")
    return seeds


def config_key(row, varied):
    return (row["task"], row["method"]) + tuple(row[c] for c in varied)


def per_user(per, metric):
    """Sorted user ids and each user's mean of ``metric`` over their test examples (cold-start users may hold
    several target items in the test split; attribute tasks hold one example per user)."""
    users, inverse = np.unique(per["users"], return_inverse=True)
    return users, np.bincount(inverse, weights=per["values"][metric]) / np.bincount(inverse)


def is_binary(*vectors):
    return all(np.isin(v, (0.0, 1.0)).all() for v in vectors)


def mcnemar_exact(a, b):
    """Two-sided exact McNemar p of paired 0/1 outcomes: binomial test of the discordant pairs at 1/2."""
    from scipy.stats import binomtest

    only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    p = 1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b, 0.5).pvalue
    return only_a, only_b, float(p)


def verdict(lo, hi, name_a, name_b):
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "n/a"
    if lo <= 0.0 <= hi:
        return "tie (CI holds 0)"
    return f"{name_a} higher" if lo > 0 else f"{name_b} higher"


def fmt_ci(ci):
    return f"[{ci.lo:+.4f}, {ci.hi:+.4f}]" if ci.lo < 0 or ci.hi < 0 else f"[{ci.lo:.4f}, {ci.hi:.4f}]"


def seed_report(runs, seeds, varied, metric_cols, args):
    """Multi-seed tables: mean ± sd and t-interval over seeds, tests against the majority class, paired
    comparisons of the methods of a task on the same split (same seed)."""
    from scipy.stats import binomtest

    from recbole_ext import stats

    configs = list(dict.fromkeys(config_key(row, varied) for row, _ in runs))
    by = {(config_key(row, varied), row["seed"]): (row, per) for row, per in runs}
    label = {c: " / ".join(str(x) for x in c[1:]) for c in configs}
    seed_text = ", ".join(map(str, seeds))
    out = [
        f"**Over seeds {seed_text}** (n = {len(seeds)}). One backbone per source dataset, pretrained once with the "
        "configuration's default seed (2020); the fine-tuning seed varies the target table and patch initialisation, "
        "the batching and negatives, the candidates of the sampled protocol and the 70/10/20 split of the examples "
        "(RecBole shuffles them with the seeded torch generator: the majority share of the attribute test split "
        "changes with the seed). Interval: 95 % Student-t over the seeds' test values (recbole_ext.stats.mean_ci, "
        f"t with {len(seeds) - 1} df).",
        "",
    ]
    summary = []
    for c in configs:
        for metric in metric_cols:
            vals = [by[(c, s)][0].get(metric) for s in seeds if (c, s) in by]
            if any(v is None for v in vals) or len(vals) != len(seeds):
                continue
            ci = stats.mean_ci(vals)
            entry = {"task": c[0], "method": label[c], "metric": metric, "mean ± sd": f"{ci.mean:.4f} ± {ci.sd:.4f}",
                     "95% CI": fmt_ci(ci), "per seed": ", ".join(f"{v:.4f}" for v in vals),
                     "epochs per seed": ", ".join(str(by[(c, s)][0]["epochs"]) for s in seeds)}
            if metric == "hit@1" and "majority" in by[(c, seeds[0])][0]:
                maj = [by[(c, s)][0]["majority"] for s in seeds]
                gap = stats.mean_ci(np.subtract(vals, maj))
                entry["majority per seed"] = ", ".join(f"{m:.4f}" for m in maj)
                entry["acc − majority (95% CI)"] = (f"{gap.mean:+.4f} {fmt_ci(gap)}: "
                                                    + verdict(gap.lo, gap.hi, "above majority", "below majority"))
            summary.append(entry)
    cols = ["task", "method", "metric", "mean ± sd", "95% CI", "per seed", "majority per seed",
            "acc − majority (95% CI)", "epochs per seed"]
    out += ["Test metric over seeds (method / user vector / patch init as varied):", "",
            markdown_table(summary, [c for c in cols if any(c in r for r in summary)]), ""]

    majority_rows = []
    for c in configs:
        for s in seeds:
            if (c, s) not in by or "majority_correct" not in by[(c, s)][1]:
                continue
            row, per = by[(c, s)]
            correct = per["values"]["hit@1"]
            n, k = len(correct), int(correct.sum())
            guess = per["majority_correct"]
            only_model, only_guess, p_mc = mcnemar_exact(correct, guess)
            majority_rows.append({
                "task": c[0], "method": label[c], "seed": s, "test users": n, "correct": k,
                "majority-class correct": int(guess.sum()), "accuracy": k / n, "majority": row["majority"],
                "binomial p (one-sided, acc > majority)":
                    f"{binomtest(k, n, row['majority'], alternative='greater').pvalue:.3g}",
                "McNemar vs majority guess (model-only / guess-only, exact two-sided p)":
                    f"{only_model} / {only_guess}, p = {p_mc:.3f}",
            })
    if majority_rows:
        out += ["Attribute tasks against the majority class, per seed: exact one-sided binomial test of the number of "
                "correct test users against the majority share of that test split (scipy.stats.binomtest), and exact "
                "McNemar test against the majority guess on the same users (the majority class of the test split "
                "guessed for everyone).", "",
                markdown_table(majority_rows, list(majority_rows[0])), ""]

    paired = []
    for i, a in enumerate(configs):
        for b in configs[i + 1:]:
            if a[0] != b[0]:
                continue
            for metric in metric_cols:
                diffs = []
                for s in seeds:
                    if (a, s) not in by or (b, s) not in by or metric not in by[(a, s)][1]["values"]:
                        continue
                    ua, va = per_user(by[(a, s)][1], metric)
                    ub, vb = per_user(by[(b, s)][1], metric)
                    if not np.array_equal(ua, ub):
                        raise RuntimeError(f"seed {s}: {label[a]} and {label[b]} were tested on different users; "
                                           "a paired comparison needs the same split")
                    cmp = stats.paired_comparison(va, vb, seed=s)
                    if is_binary(va, vb):
                        only_a, only_b, p = mcnemar_exact(va, vb)
                        test = f"McNemar exact ({only_a} / {only_b} discordant)"
                    else:
                        p = cmp["p_t"]
                        test = f"paired t (Wilcoxon p = {cmp['p_wilcoxon']:.3f})"
                    diffs.append(cmp["diff"])
                    paired.append({
                        "task": a[0], "A": label[a], "B": label[b], "metric": metric, "seed": s, "users": cmp["n"],
                        "A mean": cmp["mean_a"], "B mean": cmp["mean_b"], "A − B": f"{cmp['diff']:+.4f}",
                        "95% CI": f"[{cmp['ci_lo']:+.4f}, {cmp['ci_hi']:+.4f}]", "test": test, "p": f"{p:.3g}",
                        "verdict": verdict(cmp["ci_lo"], cmp["ci_hi"], "A", "B"),
                    })
                if len(diffs) >= 2:
                    ci = stats.mean_ci(diffs)
                    paired.append({
                        "task": a[0], "A": label[a], "B": label[b], "metric": metric, "seed": "over seeds",
                        "users": "", "A − B": f"{ci.mean:+.4f}", "95% CI": fmt_ci(ci),
                        "test": f"t over {len(diffs)} seed means", "p": "",
                        "verdict": verdict(ci.lo, ci.hi, "A", "B"),
                    })
    if paired:
        out += ["Paired comparisons on the same split (same seed): per-user values (cold-start: the user's mean over "
                "their test examples; attribute: 0/1 correctness), A − B with a 95 % percentile bootstrap interval "
                "over users (10,000 resamples, recbole_ext.stats.paired_comparison); test: exact McNemar for 0/1 "
                "outcomes, otherwise the paired t-test (Wilcoxon signed-rank p beside it); two-sided, unadjusted. "
                "'over seeds': the seeds' mean differences with a 95 % t-interval. A difference whose interval "
                "holds 0 is a tie.", "",
                markdown_table(paired, ["task", "A", "B", "metric", "seed", "users", "A mean", "B mean", "A − B",
                                        "95% CI", "test", "p", "verdict"]), ""]
    return "\n".join(out)


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
    parser.add_argument("--note", default="", help="a sentence appended to the section (how the run was made)")
    parser.add_argument("--runs_file", default="",
                        help="JSON-lines file: every finished fine-tuning run (row + per-example test values) is "
                             "appended to it, and runs already in it are reused instead of re-run (same arguments)")
    parser.add_argument("--attribute_checkpoint", default="",
                        help="reuse this pretrained backbone checkpoint for the attribute tasks (skips their pretraining)")
    parser.add_argument("--pretrain_last_epoch", action="store_true", help="keep the last pretraining epoch")
    parser.add_argument("--attribute_batch", type=int, default=512)
    parser.add_argument("--attribute_user_vector", default="auto",
                        help="user vector(s) of the attribute tasks, comma-separated (e.g. mean,mean_with_padding)")
    parser.add_argument("--modes", default=MODES, help="fine-tuning modes, comma-separated; patch:serial / patch:parallel")
    parser.add_argument("--patch_init", default="faithful",
                        help="patch initialisation(s) of the patch modes, comma-separated (faithful,near_identity)")
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--seeds", default="",
                        help="comma-separated fine-tuning seeds (>= 3), e.g. 2020,2021,2022: every run is repeated per "
                             "seed on the one pretrained backbone, and the report adds mean / sd / 95%% t-interval "
                             "over seeds, binomial tests against the majority class and paired comparisons")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no_write", action="store_true")
    parser.add_argument("--section", default="PeterRec", help="BENCHMARKS.md section to (re)write")
    args = parser.parse_args(argv)
    args.dilations = [int(d) for d in args.dilations.strip("[]").split(",")]
    wall_start = time.perf_counter()
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
        if source == "ml-100k" and args.attribute_checkpoint:
            # reuse a backbone this script pretrained before (same --backbone / sizes): no pretraining row measured
            backbones[source] = args.attribute_checkpoint
            pre_rows.append({"source dataset": f"{source} (reused checkpoint {os.path.basename(args.attribute_checkpoint)})",
                             "test hit@10": "", "test mrr@10": "", "seconds": ""})
            continue
        result, seconds = pretrain(source, data_path, args, workdir)
        backbones[source] = result["checkpoint"]
        pre_rows.append({"source dataset": source, "test hit@10": result["test_result"]["hit@10"],
                         "test mrr@10": result["test_result"]["mrr@10"], "seconds": round(seconds, 1)})
        print(pre_rows[-1], flush=True)
    seeds = parse_seeds(args.seeds) if args.seeds else [args.seed]
    runs = []  # (row, per-example values)
    saved_runs = load_runs(args.runs_file) if args.runs_file else {}
    for seed in seeds:
        for task in tasks:
            ckpt = backbones["ml-100k" if task in pdata.ATTRIBUTES else "ml-100k-cold-src"]
            vectors = user_vectors if task in pdata.ATTRIBUTES else ["auto"]
            for mode, insertion in parse_modes(args.modes):
                for user_vector in vectors:
                    for patch_init in (patch_inits if mode == "patch" else ["faithful"]):
                        key = run_key(seed, task, mode, insertion, user_vector, patch_init)
                        if key in saved_runs:
                            row, per = saved_runs[key]
                        else:
                            row, per = finetune(task, data_path, ckpt, mode, insertion, args, workdir, user_vector,
                                                patch_init, seed=seed)
                            if args.runs_file:
                                save_run(args.runs_file, key, row, per)
                        rows.append(row)
                        runs.append((row, per))
                        print(rows[-1], flush=True)
    metric_cols = sorted({k for r in rows for k in r if "@" in k})
    varied = [c for c, values in (("user vector", user_vectors), ("patch init", patch_inits)) if len(values) > 1]
    columns = (["seed"] if args.seeds else []) + ["task", "method"] + varied + metric_cols + [
        "majority", "trainable (no head)", "trainable (with head)", "share of backbone", "s/epoch", "epochs"]
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
    if args.seeds:
        body = body.replace(f"seed {args.seed}, split", f"seeds {', '.join(map(str, seeds))} (see below), split")
        body += "\n\n" + seed_report(runs, seeds, varied, metric_cols, args)
    if args.note:
        body += "\n\n" + args.note
    body += f"\n\nTotal benchmark wall time {(time.perf_counter() - wall_start) / 60:.1f} min."
    print(body)
    if not args.no_write:
        write_section(args.section, body)


if __name__ == "__main__":
    main()
