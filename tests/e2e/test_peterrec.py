"""PeterRec end to end: the documented demo commands (python -m recbole_ext run, packaged defaults); on ml-100k-derived data
(cold-start item transfer) pretrain NextItNetP on the source domain, fine-tune with patches, compare with random
ranking under the sampled protocol (100 candidates); ml-100k gender estimation.

Measured on this small
setting, PeterRec is *not* better than the frozen-backbone (head) mode or popularity ranking (see docs/peterrec.md);
this test checks that the two-stage flow learns a real signal."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from recbole_ext.data import peterrec_data as pdata
from recbole_ext.quick_start import run_recbole
from tests.helpers import REPO

torch.set_num_threads(int(os.environ.get("PETERREC_TEST_THREADS", 1)))  # 1 thread; 2 to re-check margins
DEMO_DIR = os.path.join(os.path.dirname(REPO), "shared", "datasets", "peterrec-demo")
if not os.path.isdir(DEMO_DIR):
    DEMO_DIR = "/work/shared/datasets/peterrec-demo"

# the demo commands of docs/peterrec.md, word for word (the test checks that the docs still show them)
DEMO_COMMANDS = [
    "python -m recbole_ext.data.peterrec_data demo --out dataset --demo_dir ../shared/datasets/peterrec-demo",
    "python -m recbole_ext run --model=NextItNetP --dataset=peterrec-demo-pre",
    "python -m recbole_ext run --model=PeterRec --dataset=peterrec-demo-fine --pretrained_model_file=saved/NextItNetP-<time>.pth",
]


def _run(args):
    done = subprocess.run([sys.executable] + args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    return done.stdout


@pytest.mark.skipif(not os.path.isdir(DEMO_DIR), reason="peterrec-demo files not available")
def test_documented_demo_commands_run_with_the_default_configuration(run_dir):
    """Issue 14: the documented demo path (convert, pretrain NextItNetP, fine-tune PeterRec) runs through
    run_recbole.py with the packaged defaults only; it used to stop at pretraining with
    "[timestamp] is not exist in interaction" because the default load_col dropped the timestamp.
    Added here: 1 epoch, quiet output, the absolute demo folder (the test runs in a temporary folder)."""
    docs = open(os.path.join(REPO, "docs", "peterrec.md"), encoding="utf-8").read()
    for command in DEMO_COMMANDS:
        assert command in docs, command
    fast = ["--epochs=1", "--show_progress=False", "--state=WARNING"]
    convert, pretrain, finetune = (command.split()[1:] for command in DEMO_COMMANDS)
    _run(convert + [f"--demo_dir={DEMO_DIR}"])  # the last --demo_dir wins
    _run(pretrain + fast)
    ckpts = [f for f in os.listdir(run_dir / "saved") if f.startswith("NextItNetP")]
    assert len(ckpts) == 1
    finetune = [f"--pretrained_model_file=saved/{ckpts[0]}" if arg.startswith("--pretrained_model_file") else arg
                for arg in finetune]
    out = _run(finetune + fast)
    assert "hit@5" in out and "mrr@5" in out
    # GRec's default load_col: test_patch_finetuning_freezes_backbone_bit_identically[GRec] (tests/model)


def test_coldrec_two_stage_transfer_beats_random_ranking(run_dir, quiet_config, tmp_path):
    data = str(tmp_path / "data")
    src, tgt = pdata.write_coldrec_task(data, max_source_len=20)
    pre = run_recbole("NextItNetP", src, config_dict=dict(
        quiet_config, data_path=data, embedding_size=32, dilations=[1, 4, 1, 4], MAX_ITEM_LIST_LENGTH=20,
        epochs=3, train_batch_size=64, eval_batch_size=4096, metrics=["Hit"], topk=[10], valid_metric="Hit@10",
        load_col={"inter": ["user_id", "item_id", "rating", "timestamp"]}))
    fine = dict(quiet_config, data_path=data, pretrained_model_file=pre["checkpoint"], epochs=8, stopping_step=3,
                train_batch_size=64, eval_batch_size=512, peterrec_eval="sampled", metrics=["Hit", "MRR"],
                topk=[5], valid_metric="MRR@5")
    patch = run_recbole("PeterRec", tgt, config_dict=dict(fine, peterrec_mode="patch", peterrec_insertion="parallel"))
    got = patch["test_result"]
    random_hit = 5 / 100
    random_mrr = sum(1 / r for r in range(1, 6)) / 100
    assert got["hit@5"] > 3 * random_hit, got
    assert got["mrr@5"] > 3 * random_mrr, got
    assert patch["best_valid_result"]["mrr@5"] > 3 * random_mrr


def _write_synthetic_attribute_task(root, n_users=300, n_items=80, length=20, own_share=0.75, minority=0.4, seed=0):
    """A pretraining dataset ``synth-src`` and an attribute task ``synth-attr`` whose class the history determines.

    Users of class ``a`` (60 %) draw each history item from the first half of the items with probability
    ``own_share`` (else from the second half), users of class ``b`` the other way round. The data are fixed
    (numpy seed 0); the Bayes-optimal accuracy from the history is ~1 (P(a user's 20 items are mostly the other
    half's) = P(Binomial(20, 0.25) >= 10) = 0.014), the majority class 0.6."""
    rng = np.random.default_rng(seed)
    is_b = rng.random(n_users) < minority
    half = n_items // 2
    own = rng.random((n_users, length)) < own_share
    first_half = np.where(is_b[:, None], ~own, own)
    items = np.where(first_half, 1, half + 1) + rng.integers(0, half, (n_users, length))
    users = np.repeat(np.arange(1, n_users + 1), length)
    src = pd.DataFrame({"user_id": users.astype(str), "item_id": items.ravel().astype(str),
                        "timestamp": np.tile(np.arange(length, dtype=float), n_users)})
    pdata._write(os.path.join(root, "synth-src"), "synth-src",
                 {"inter": (src, ["user_id:token", "item_id:token", "timestamp:float"])})
    uid = np.arange(1, n_users + 1).astype(str)
    examples = pd.DataFrame({"user_id": uid, "item_id": np.where(is_b, "b", "a")})
    seqs = pd.DataFrame({"user_id": uid, "source_seq": [" ".join(map(str, row)) for row in items]})
    pdata._write_finetune_task(root, "synth-attr", examples, seqs)
    return "synth-src", "synth-attr"


def test_patches_learn_an_attribute_the_history_determines_backbone_frozen(run_dir, quiet_config, tmp_path):
    """Fast end-to-end check of the patch method with a clear margin (replaces the single-split gender margin as the
    default-suite acceptance test): a small NextItNetP pretrained on synthetic histories whose item halves mark the
    user's class, PeterRec with serial patches (everything else frozen) must classify the held-out users far above
    the majority class (>= 0.9 vs ~0.6; measured 1.0 with seeds 2020 / 2021 / 2022 and 1 or 2 torch threads,
    docs/peterrec.md), and the frozen backbone weights must stay bit-identical to the checkpoint."""
    from recbole_ext.checkpoint import load_checkpoint
    from recbole_ext.config import Config
    from recbole_ext.utils import create_dataset, data_preparation

    data = str(tmp_path / "data")
    src, task = _write_synthetic_attribute_task(data)
    seed = int(os.environ.get("PETERREC_TEST_SEED", 2020))  # to re-check the margin with other seeds
    pre = run_recbole("NextItNetP", src, config_dict=dict(
        quiet_config, data_path=data, embedding_size=16, dilations=[1, 2], MAX_ITEM_LIST_LENGTH=20, epochs=10,
        learning_rate=0.01, eval_step=0, train_batch_size=32, eval_batch_size=1024, metrics=["Hit"], topk=[10],
        valid_metric="Hit@10", load_col={"inter": ["user_id", "item_id", "timestamp"]}, seed=seed))
    fine = dict(quiet_config, data_path=data, pretrained_model_file=pre["checkpoint"], peterrec_mode="patch",
                peterrec_insertion="serial", peterrec_user_vector="mean", embedding_size=16, dilations=[1, 2],
                learning_rate=0.01, train_batch_size=16, epochs=10, stopping_step=5, peterrec_eval="full",
                metrics=["Hit"], topk=[1], valid_metric="Hit@1", seed=seed)
    result = run_recbole("PeterRec", task, config_dict=fine)
    config = Config("PeterRec", task, config_dict=fine)
    _, _, test_data = data_preparation(config, create_dataset(config))
    labels = test_data._dataset.inter_feat[config["ITEM_ID_FIELD"]]
    majority = float(torch.bincount(labels).max()) / len(labels)
    assert len(labels) == 60 and majority <= 0.8  # 0.58-0.75 over seeds 2020-2022
    assert result["test_result"]["hit@1"] >= 0.9, (result["test_result"], majority)
    before = load_checkpoint(pre["checkpoint"])["state_dict"]
    after = load_checkpoint(result["checkpoint"])["state_dict"]
    frozen = [k for k in after if k.startswith("encoder.") and ".mp" not in k and "layer_norm2" not in k]
    assert frozen
    assert all(torch.equal(after[k], before[k]) for k in frozen)
    assert any(".mp" in k for k in after)


@pytest.mark.slow
def test_gender_reproduction_reaches_the_majority_class(run_dir, quiet_config, tmp_path):
    """ml-100k gender estimation (issue 6 flow, slow: minutes): pretrain the GRec encoder on ml-100k (masked-item
    prediction, last epoch kept), fine-tune PeterRec (serial patches, everything else frozen) on 70 % of the
    users with their full history, and test on the held-out 20 % (188 users).

    Issue 15: this used to assert "beats the majority class" on one split, a margin of 7-8 users out of 188
    (one-sided binomial p 0.08-0.11) that also moved with the torch thread count. Over seeds 2020-2022 the
    accuracy minus the majority share is +0.037 / +0.043 / +0.005 (BENCHMARKS.md "PeterRec (gender, GRec backbone,
    seeds)"), so what is asserted is the reproducible part: the patched model does not fall below the majority
    class by more than two test users. The margin of the patch method is checked fast and with a clear margin by
    test_patches_learn_an_attribute_the_history_determines_backbone_frozen.

    The CLS user vector carries next to no gender signal on a dataset this small (docs/peterrec.md), so the
    user vector is the mean of the encoder's states over the left-padded row, padding included
    (``peterrec_user_vector: mean_with_padding``, the recipe of properties/peterrec_gender_ml-100k.yaml; the masked
    ``mean`` measured below the majority class with this recipe, BENCHMARKS.md)."""
    from recbole_ext.config import Config
    from recbole_ext.utils import create_dataset, data_preparation

    data = str(tmp_path / "data")
    task = pdata.write_attribute_task(data, "gender", max_source_len=300)
    pre = run_recbole("GRec", "ml-100k", config_dict=dict(
        quiet_config, data_path=data, MAX_ITEM_LIST_LENGTH=50, epochs=40, eval_step=0, train_batch_size=64,
        eval_batch_size=2048, metrics=["Hit"], topk=[10], valid_metric="Hit@10"))
    fine = dict(quiet_config, data_path=data, pretrained_model_file=pre["checkpoint"], peterrec_mode="patch",
                peterrec_insertion="serial", peterrec_user_vector="mean_with_padding", train_batch_size=32, epochs=40,
                stopping_step=10, peterrec_eval="full", metrics=["Hit"], topk=[1], valid_metric="Hit@1")
    result = run_recbole("PeterRec", task, config_dict=fine)
    config = Config("PeterRec", task, config_dict=fine)
    _, _, test_data = data_preparation(config, create_dataset(config))
    labels = test_data._dataset.inter_feat[config["ITEM_ID_FIELD"]]
    majority = float(torch.bincount(labels).max()) / len(labels)
    assert len(labels) > 150
    assert result["test_result"]["hit@1"] >= majority - 2 / len(labels) - 1e-9, (result["test_result"], majority)
