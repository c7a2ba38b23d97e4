"""CaliTune: why our CP JSD@10 sits below the spec's reference (§11.2) while CP NDCG@10 matches it.

    python benchmarks/calitune_jsd_gap.py --backbone-checkpoint PATH [--permutation-seeds 0 1 2 3 4]
                                          [--workdir DIR] [--no-write]

On one BPR backbone trained with the spec's protocol (benchmarks/calitune.py writes one), for every
λ in 0.0 … 0.9 (CP, m = 100, k = 10, test split) the CP lists are computed once and JSD@10 is scored
(a) against each user's own target P_u — the evaluation's JSD (spec §9.2, no renormalisation; must equal
    the evaluator's jsd@10) and CP's own renormalised JSD (``cp_jsd``), both keeping each user's row;
(b) against a random permutation of the evaluated users' target rows (each list scored against another
    user's P_u), mean ± sd over the permutation seeds.
NDCG@10 and the reference values are reported next to them. Results: BENCHMARKS.md section
"CaliTune: CP JSD gap to the reference".
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._report import markdown_table, write_section  # noqa: E402
from benchmarks.calitune import REFERENCE_CP, train_backbone  # noqa: E402
from recbole_ext.analysis import ndcg_from_hits, recommend_topk, set_reranker  # noqa: E402
from recbole_ext.data.popularity import calibration_data  # noqa: E402
from recbole_ext.evaluator.metrics.calibration import list_group_shares, per_user_jsd  # noqa: E402
from recbole_ext.trainer.cp import cp_jsd  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAMBDAS = [round(0.1 * i, 1) for i in range(10)]
K = 10


def permuted_targets(user_target, users, seed):
    """A copy of the ``[n_users, G]`` target table whose evaluated users' rows are shuffled among those
    users (seeded): each list is then scored against another evaluated user's P_u."""
    generator = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(users.shape[0], generator=generator)
    table = user_target.clone()
    table[users] = user_target[users[perm]]
    return table


def lambda_row(trainer, test_data, calib, lam, seeds):
    """One λ: the CP lists once, then NDCG@10 and JSD@10 against own / permuted targets."""
    set_reranker(trainer, "cp", cp_lambda=lam, cp_candidates=100)
    evaluated = trainer.evaluate(test_data, load_best_model=False)
    users, items, hits, n_pos = recommend_topk(trainer, test_data, K)
    own = float(per_user_jsd(items, users, calib.item_group, calib.user_target)[:, K - 1].mean())
    shares = list_group_shares(items, calib.item_group)[:, K - 1]
    own_renorm = float(cp_jsd(calib.user_target[users].double(), shares).mean())
    perm = np.array([
        float(per_user_jsd(items, users, calib.item_group, permuted_targets(calib.user_target, users, s))[:, K - 1].mean())
        for s in seeds
    ])
    ref_ndcg, ref_jsd = REFERENCE_CP[lam]
    return {
        "λ": str(lam), "NDCG@10": float(ndcg_from_hits(hits, n_pos).mean()), "evaluator NDCG@10": evaluated["ndcg@10"],
        "ref NDCG@10": ref_ndcg, "evaluator JSD@10": evaluated["jsd@10"], "ref JSD@10": ref_jsd,
        "own JSD@10": own, "Δ own": own - ref_jsd, "own cp_jsd@10": own_renorm, "Δ own cp_jsd": own_renorm - ref_jsd,
        "perm mean": float(perm.mean()), "perm sd": float(perm.std(ddof=1)) if perm.size > 1 else float("nan"),
        "Δ perm": float(perm.mean()) - ref_jsd, "max abs Δ one perm": float(np.abs(perm - ref_jsd).max()), "perm values": perm, "users": int(users.shape[0]),
    }


def span(values):
    """``min–max`` of absolute values, 4 decimals."""
    values = np.abs(np.asarray(values, dtype=np.float64))
    return f"{values.min():.4f}–{values.max():.4f}"


def summary(rows):
    """The measured statement: ranges of the differences to the reference, and whether (b) reproduces it."""
    d_perm = [r["Δ perm"] for r in rows]
    d_own = [r["Δ own"] for r in rows]
    d_renorm = [r["Δ own cp_jsd"] for r in rows]
    ndcg_gap = max(abs(round(r["NDCG@10"], 4) - r["ref NDCG@10"]) for r in rows)
    below = all(d < 0 for d in d_own + d_renorm)
    within = max(abs(d) for d in d_perm) <= 0.004
    lines = [
        f"Measured: CP NDCG@10 differs from the reference by at most {ndcg_gap:.4f} (4 decimals) over λ 0.0–0.9. "
        f"Scoring our CP lists against a permutation of the users' target rows gives JSD@10 within "
        f"{span(d_perm)} of the reference (|mean − ref| per λ, min–max over λ; largest permutation sd "
        f"{max(r['perm sd'] for r in rows):.4f}; a single permutation lies at most "
        f"{max(r['max abs Δ one perm'] for r in rows):.4f} from the reference); keeping each user's own target gives {span(d_own)} "
        f"(evaluation JSD) and {span(d_renorm)} (CP's renormalised JSD) "
        + ("below the reference at every λ." if below else "from the reference (not below it at every λ)."),
    ]
    if within:
        lines.append("The permuted-target scoring reproduces the reference CP JSD within 0.004 at every λ; the "
                     "own-target variants do not — consistent with a reference pipeline that scored CP lists against "
                     "mismatched user rows. Our NDCG is comparable with the reference; our CP JSD is not.")
    else:
        worst = max(rows, key=lambda r: abs(r["Δ perm"]))
        lines.append(f"The permuted-target scoring does NOT reproduce the reference within 0.004 at every λ "
                     f"(largest gap {worst['Δ perm']:+.4f} at λ = {worst['λ']}).")
    return " ".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone-checkpoint", required=True, help="BPR backbone saved by benchmarks/calitune.py")
    parser.add_argument("--permutation-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workdir", default=os.path.join(ROOT, "saved", "bench_calitune_jsd_gap"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if len(args.permutation_seeds) < 5:
        parser.error("--permutation-seeds: give at least 5 seeds (mean ± sd over permutations)")
    torch.set_num_threads(1)
    os.makedirs(args.workdir, exist_ok=True)
    os.chdir(args.workdir)

    bb = train_backbone("BPR", args.workdir, {"epochs": 300}, args.backbone_checkpoint)
    trainer, test_data = bb["trainer"], bb["data"][2]
    calib = calibration_data(bb["data"][0]._dataset, bb["config"])
    rows = []
    for lam in LAMBDAS:
        rows.append(lambda_row(trainer, test_data, calib, lam, args.permutation_seeds))
        row = rows[-1]
        print({k: v for k, v in row.items() if k != "perm values"}, flush=True)
        # (a) must be the evaluator's JSD@10 (the CaliTune section's CP JSD): the same lists, the same metric
        if abs(row["own JSD@10"] - row["evaluator JSD@10"]) > 1e-4 or abs(row["NDCG@10"] - row["evaluator NDCG@10"]) > 1e-4:
            raise RuntimeError(f"λ = {lam}: recomputed lists disagree with the evaluator: {row}")
    set_reranker(trainer, None)

    for row in rows:
        row["perm JSD@10 (mean ± sd)"] = f"{row['perm mean']:.4f} ± {row['perm sd']:.4f}"
        row["Δ NDCG"] = round(round(row["NDCG@10"], 4) - row["ref NDCG@10"], 4) + 0.0  # both at 4 decimals; no "-0.0000"
    n_users = rows[0]["users"]
    body = [
        "ML-100K, BPR backbone (spec protocol: 256-d, lr 1e-4, batch 4096, 300 epochs, early stop 10, per-user random "
        f"80/10/10, seed 920; checkpoint `{os.path.basename(args.backbone_checkpoint)}` from benchmarks/calitune.py). "
        f"CP m = 100, k = 10, test split ({n_users} users). Per λ the CP lists are computed once and JSD@10 is scored "
        "against each user's own target P_u — the evaluation JSD (ε, no renormalisation; equals the evaluator's "
        "jsd@10, checked) and CP's renormalised `cp_jsd` — and against a random permutation of the evaluated users' "
        f"target rows (mean ± sd over {len(args.permutation_seeds)} permutation seeds "
        f"{', '.join(map(str, args.permutation_seeds))}). Reference: spec §11.2. Δ = ours − reference.",
        "",
        markdown_table(rows, ["λ", "NDCG@10", "ref NDCG@10", "Δ NDCG", "own JSD@10", "own cp_jsd@10", "ref JSD@10",
                              "Δ own", "Δ own cp_jsd", "perm JSD@10 (mean ± sd)", "Δ perm",
                              "max abs Δ one perm"]),
        "",
        summary(rows),
    ]
    text = "\n".join(body)
    print(text)
    if not args.no_write:
        write_section("CaliTune: CP JSD gap to the reference", text)


if __name__ == "__main__":
    main()
