"""PeterRec (issue 6): backbone blocks, patches, parameter counts, freezing, errors, converters, two-stage flow."""

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recbole_ext.checkpoint import load_checkpoint
from recbole_ext.io import atomic_torch_save
from recbole_ext.config import Config
from recbole_ext.data import peterrec_data as pdata
from recbole_ext.errors import CheckpointError, ConfigError
from recbole_ext.model.sequential_recommender.peterrec import masked_mean
from recbole_ext.model.sequential_recommender.peterrec_backbone import (
    INSERTIONS,
    PATCH_INITS,
    DilatedConv,
    DilatedEncoder,
    ModelPatch,
    ResidualBlock,
    left_align,
    parameter_formula,
)
from recbole_ext.quick_start import run_recbole
from recbole_ext.trainer.peterrec import ranks_against, rank_metrics, sample_negatives
from recbole_ext.utils import create_dataset, data_preparation, get_model
from tests.helpers import REPO as ROOT

torch.set_num_threads(1)
DEMO = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "peterrec-demo")
if not os.path.isdir(DEMO):
    DEMO = "/work/shared/datasets/peterrec-demo"
PRE = os.path.join(DEMO, "history_sequences_20181014_fajie_transfer_pretrain_small.csv")
FINE = os.path.join(DEMO, "history_sequences_20181014_fajie_transfer_finetune_small.csv")
needs_demo = pytest.mark.skipif(not os.path.isfile(FINE), reason="peterrec-demo files not available")


# ------------------------------------------------------------------------------------------------
# backbone units
# ------------------------------------------------------------------------------------------------
def test_dilated_conv_taps_hand_computed():
    conv = DilatedConv(1, 3, dilation=2, causal=True)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[2.0, 3.0, 5.0]]]))
        conv.bias.fill_(0.5)
    x = torch.arange(1.0, 9.0).view(1, 8, 1)
    out = conv(x).view(-1)
    xs = [0.0] * 4 + list(range(1, 9))  # 4 = (k-1)*d zeros on the left
    expected = [2 * xs[t] + 3 * xs[t + 2] + 5 * xs[t + 4] + 0.5 for t in range(8)]
    assert out.tolist() == pytest.approx(expected)
    same = DilatedConv(1, 3, dilation=2, causal=False)
    with torch.no_grad():
        same.weight.copy_(conv.weight)
        same.bias.fill_(0.5)
    xs = [0.0] * 2 + list(range(1, 9)) + [0.0] * 2  # SAME: d zeros each side, taps t-d, t, t+d
    expected = [2 * xs[t] + 3 * xs[t + 2] + 5 * xs[t + 4] + 0.5 for t in range(8)]
    assert same(x).view(-1).tolist() == pytest.approx(expected)


def test_causal_encoder_never_sees_the_future():
    torch.manual_seed(0)
    enc = DilatedEncoder(50, 16, [1, 4, 1, 4], 3, causal=True)
    ids = torch.randint(1, 50, (3, 30))
    base = enc(ids)
    for t in (0, 7, 18, 29):
        changed = ids.clone()
        changed[:, t:] = (changed[:, t:] % 49) + 1  # alter position t and everything after it
        out = enc(changed)
        assert torch.equal(out[:, :t], base[:, :t]), f"outputs before {t} changed"
        assert not torch.allclose(out[:, t], base[:, t])
    grec = DilatedEncoder(50, 16, [1, 4], 3, causal=False)  # non-causal: the past does depend on the future
    changed = ids.clone()
    changed[:, 10] = (changed[:, 10] % 49) + 1
    assert not torch.allclose(grec(changed)[:, 9], grec(ids)[:, 9])


def test_residual_block_matches_spec_formula():
    torch.manual_seed(1)
    block = ResidualBlock(8, 3, dilation=2, causal=True)
    assert block.conv1.dilation == 2 and block.conv2.dilation == 4
    assert block.layer_norm1.eps == 1e-8
    x = torch.randn(2, 12, 8)
    a = F.relu(block.layer_norm1(block.conv1(x)))
    expected = x + F.relu(block.layer_norm2(block.conv2(a)))
    assert torch.allclose(block(x), expected)
    # serial: MP right after each conv, before its LayerNorm
    block.add_patches("serial", 2)
    a = F.relu(block.layer_norm1(block.mp1(block.conv1(x))))
    assert torch.allclose(block(x), x + F.relu(block.layer_norm2(block.mp2(block.conv2(a)))))
    # parallel: conv(x) + MP(x), where MP already holds the identity -> an extra skip across each conv (P5)
    block.add_patches("parallel", 2)
    for mp in (block.mp1, block.mp2):
        torch.nn.init.zeros_(mp.up[0].weight)
    a = F.relu(block.layer_norm1(block.conv1(x) + x))
    assert torch.allclose(block(x), x + F.relu(block.layer_norm2(block.conv2(a) + a)))


def test_model_patch_is_gelu_bottleneck_with_identity():
    torch.manual_seed(2)
    mp = ModelPatch(16, 4)
    y = torch.randn(3, 5, 16)
    down, up = mp.down[0], mp.up[0]
    assert down.weight.shape == (4, 16) and up.weight.shape == (16, 4)
    z = y @ down.weight.t() + down.bias
    gelu = 0.5 * z * (1 + torch.tanh((2 / np.pi) ** 0.5 * (z + 0.044715 * z**3)))
    assert torch.allclose(mp(y), y + gelu @ up.weight.t() + up.bias, atol=1e-6)


def _relative_change(encoder, insertion, init, ids):
    """||h_patched - h|| / ||h|| of the encoder output once two patches per block are added."""
    patched = copy.deepcopy(encoder)
    for block in patched.blocks:
        block.add_patches(insertion, 4, 1, init)
    with torch.no_grad():
        plain = encoder(ids)
        return float((patched(ids) - plain).norm() / plain.norm())


@pytest.mark.parametrize("causal", [True, False])
def test_near_identity_patches_leave_the_encoder_unchanged_at_init(causal):
    """Issue 14: faithful parallel patches (P5 extra identity) move the hidden state far from the pretrained one;
    near_identity (zero up-projection, bottleneck-only parallel branch) does not move it at all."""
    torch.manual_seed(3)
    encoder = DilatedEncoder(50, 16, [1, 4], 3, causal)
    ids = torch.randint(1, 50, (4, 12))
    change = {(i, n): _relative_change(encoder, i, n, ids) for i in INSERTIONS for n in PATCH_INITS}
    assert change["serial", "near_identity"] < 1e-6
    assert change["parallel", "near_identity"] < 1e-6
    assert change["parallel", "faithful"] > 0.5  # of the order of the hidden state itself
    assert 0 < change["serial", "faithful"] < change["parallel", "faithful"]  # P6: near, not at, the identity


def test_near_identity_model_patch_starts_at_zero_and_still_learns():
    torch.manual_seed(4)
    branch = ModelPatch(16, 4, identity=False, zero_up=True)  # the near_identity parallel branch
    y = torch.randn(3, 5, 16)
    out = branch(y)
    assert torch.equal(out, torch.zeros_like(y))
    (out - y).pow(2).sum().backward()  # a loss that wants the branch to move
    assert branch.up[0].weight.grad.abs().sum() > 0  # the up-projection gets a gradient from the first step
    serial = ModelPatch(16, 4, zero_up=True)  # the near_identity serial patch: exactly the identity
    assert torch.equal(serial(y), y)


def test_masked_mean_worked_example():
    """Issue 14: a left-padded row [pad, pad, 3, 5] (one channel; the pad states are 9 and 7) averages 3 and 5."""
    h = torch.tensor([[[9.0], [7.0], [3.0], [5.0]], [[1.0], [2.0], [4.0], [8.0]]])
    real = torch.tensor([[False, False, True, True], [True, True, True, True]])
    assert masked_mean(h, real).view(-1).tolist() == [4.0, 3.75]
    assert h.mean(dim=1).view(-1).tolist() == [6.0, 3.75]  # the padded mean (mean_with_padding)
    assert masked_mean(h, torch.zeros_like(real)).abs().sum() == 0  # no source item: zero vector, no NaN


def test_left_align():
    seq = torch.tensor([[5, 6, 0, 0], [1, 2, 3, 4], [7, 0, 0, 0]])
    assert left_align(seq, torch.tensor([2, 4, 1])).tolist() == [[0, 0, 5, 6], [1, 2, 3, 4], [0, 0, 0, 7]]


def test_parameter_formula_matches_spec_table():
    c64 = parameter_formula(64, 8)
    assert c64 == {"backbone": 199_680, "patches": 34_048, "layer_norm2": 1_024}
    c256 = parameter_formula(256, 8)
    assert c256["backbone"] == 3_158_016 and c256["patches"] + c256["layer_norm2"] == 533_504


def test_thin_prefixes_counts_back_from_each_users_last_row():
    uids = np.array([1, 1, 1, 1, 1, 2, 2, 3])
    assert pdata.thin_prefixes(uids, 2).tolist() == [True, False, True, False, True, False, True, True]
    assert pdata.thin_prefixes(uids, 1).all()


def test_sampled_ranking_counts_ties_against_positive():
    pos = torch.tensor([2.0, 1.0, 0.5])
    other = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [3.0, 1.0, 0.5]])
    ranks = ranks_against(pos, other)
    assert ranks.tolist() == [1, 0, 3]
    metrics = rank_metrics(ranks, [1, 5], ["hit", "mrr"])
    assert metrics["hit@1"].tolist() == [0, 1, 0]
    assert metrics["mrr@5"].tolist() == pytest.approx([0.5, 1.0, 0.25])
    positives = torch.tensor([1, 5, 9] * 200)
    neg = sample_negatives(positives, 10, 99, torch.Generator().manual_seed(0))
    assert neg.shape == (600, 99) and neg.min() >= 1 and neg.max() <= 9
    assert not (neg == positives.unsqueeze(1)).any()
    assert set(neg[positives == 5].unique().tolist()) == {1, 2, 3, 4, 6, 7, 8, 9}  # uniform, with replacement


# ------------------------------------------------------------------------------------------------
# converters
# ------------------------------------------------------------------------------------------------
@needs_demo
def test_demo_finetune_file_round_trips(tmp_path):
    name = pdata.finetune_file_to_atomic(FINE, str(tmp_path), "demo-fine")
    text = pdata.atomic_to_finetune_text(str(tmp_path / name), name)
    assert text.encode("utf-8") == open(FINE, "rb").read()
    rows = pdata.read_finetune_file(FINE)
    assert len(rows) == 30 and sum(len(t) for _, t in rows) == 47
    assert len({t for _, ts in rows for t in ts}) == 31
    inter = open(tmp_path / name / f"{name}.inter").read().strip().split("\n")
    assert len(inter) == 1 + 47


def test_finetune_file_bad_line_is_reported(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3,,4\n1,2,3,4\n")
    with pytest.raises(pdata.DatasetError, match="bad.csv:2"):
        pdata.read_finetune_file(str(bad))


def test_ml100k_attribute_and_coldrec_converters(tmp_path):
    name = pdata.write_attribute_task(str(tmp_path), "age", max_source_len=5)
    inter = open(tmp_path / name / f"{name}.inter").read().strip().split("\n")
    assert len(inter) == 1 + 943
    assert {line.split("\t")[1] for line in inter[1:]} <= {label for _, _, label in pdata.AGE_BANDS}
    users = open(tmp_path / name / f"{name}.user").read().strip().split("\n")
    assert all(1 <= len(line.split("\t")[1].split(" ")) <= 5 for line in users[1:])
    assert pdata.age_band([7, 18, 24, 25, 56, 73]).tolist() == ["<18", "18-24", "18-24", "25-34", "56+", "56+"]
    src, tgt = pdata.write_coldrec_task(str(tmp_path), target_genres=("Horror",), max_targets=3, max_source_len=5)
    src_items = {l.split("\t")[1] for l in open(tmp_path / src / f"{src}.inter").read().strip().split("\n")[1:]}
    tgt_rows = [l.split("\t") for l in open(tmp_path / tgt / f"{tgt}.inter").read().strip().split("\n")[1:]]
    assert not src_items & {item for _, item in tgt_rows}  # target-domain items never appear in the source
    per_user = {}
    for user, _ in tgt_rows:
        per_user[user] = per_user.get(user, 0) + 1
    assert max(per_user.values()) <= 3


# ------------------------------------------------------------------------------------------------
# two-stage flow on the demo data
# ------------------------------------------------------------------------------------------------
BACKBONE = {"embedding_size": 16, "dilations": [1, 4], "MAX_ITEM_LIST_LENGTH": 10, "epochs": 2,
            "train_batch_size": 8, "eval_batch_size": 64, "metrics": ["Hit", "MRR"], "topk": [5],
            "valid_metric": "MRR@5"}  # load_col (with the timestamp): the NextItNetP / GRec YAML default


@pytest.fixture
def demo_data(tmp_path):
    root = tmp_path / "data"
    pdata.pretrain_file_to_atomic(PRE, str(root), "demo-pre")
    pdata.finetune_file_to_atomic(FINE, str(root), "demo-fine")
    return str(root)


def _pretrain(model, data_path, quiet_config, **extra):
    cfg = dict(quiet_config, data_path=data_path, **BACKBONE)
    cfg.update(extra)
    return run_recbole(model, "demo-pre", config_dict=cfg)


def _finetune_config(data_path, quiet_config, checkpoint, **extra):
    cfg = dict(quiet_config, data_path=data_path, pretrained_model_file=checkpoint, epochs=3,
               train_batch_size=8, eval_batch_size=16)
    cfg.update(extra)
    return cfg


@needs_demo
@pytest.mark.parametrize("backbone", ["NextItNetP", "GRec"])
def test_patch_finetuning_freezes_backbone_bit_identically(run_dir, quiet_config, demo_data, backbone):
    result = _pretrain(backbone, demo_data, quiet_config)
    saved = load_checkpoint(result["checkpoint"])
    assert saved["other_parameter"]["item_tokens"][0] == "[PAD]"
    assert len(saved["other_parameter"]["item_tokens"]) == 175  # 174 demo tokens (incl. the pad "0") + [PAD]
    insertion = "serial" if backbone == "NextItNetP" else "parallel"
    tuned = run_recbole("PeterRec", "demo-fine",
                        config_dict=_finetune_config(demo_data, quiet_config, result["checkpoint"],
                                                     peterrec_insertion=insertion))
    after = load_checkpoint(tuned["checkpoint"])["state_dict"]
    before = saved["state_dict"]
    frozen = [k for k in after if k.startswith("encoder.") and ".mp" not in k and "layer_norm2" not in k]
    trained_ln2 = [k for k in after if "layer_norm2" in k]
    assert frozen and trained_ln2
    for key in frozen:
        assert torch.equal(after[key], before[key]), key  # bit-identical
    assert any(not torch.equal(after[k], before[k]) for k in trained_ln2)
    assert not any(k.startswith("output.") for k in after)  # the pretraining softmax is dropped


@needs_demo
def test_trainable_parameter_counts_follow_the_spec(run_dir, quiet_config, demo_data):
    ckpt = _pretrain("NextItNetP", demo_data, quiet_config, embedding_size=64, dilations=[1, 4] * 4, epochs=1)["checkpoint"]
    counts = {}
    for mode in ("patch", "head", "full"):
        config = Config("PeterRec", "demo-fine", config_dict=_finetune_config(demo_data, quiet_config, ckpt, peterrec_mode=mode))
        train_data = data_preparation(config, create_dataset(config))[0]
        model = get_model("PeterRec")(config, train_data._dataset)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        counts[mode] = trainable
    formula = parameter_formula(64, 8)
    target = 32 * 64  # 31 demo targets + the [PAD]/<UNK> row, C = 64
    vocab = (175 + 1) * 64  # items incl. [PAD] + the CLS/<UNK> row
    assert counts["patch"] == formula["patches"] + formula["layer_norm2"] + target == 35_072 + target
    assert counts["head"] == target
    assert counts["full"] == formula["backbone"] + vocab + target
    assert (counts["patch"] - target) / formula["backbone"] == pytest.approx(0.1756, abs=1e-4)


@needs_demo
def test_finetuning_errors(run_dir, quiet_config, demo_data, tmp_path):
    ckpt = _pretrain("NextItNetP", demo_data, quiet_config, epochs=1)["checkpoint"]
    with pytest.raises(ConfigError, match="divisor of the channel count 16"):
        run_recbole("PeterRec", "demo-fine", config_dict=_finetune_config(demo_data, quiet_config, ckpt, peterrec_patch_size=3))
    with pytest.raises(ConfigError, match="peterrec_insertion"):
        run_recbole("PeterRec", "demo-fine", config_dict=_finetune_config(demo_data, quiet_config, ckpt, peterrec_insertion="both"))
    # a source token the backbone has never seen
    lines = open(FINE).read().split("\n")
    lines[0] = "987654321," + lines[0].split(",", 1)[1]
    other = tmp_path / "other.csv"
    other.write_text("\n".join(lines))
    pdata.finetune_file_to_atomic(str(other), demo_data, "demo-other")
    with pytest.raises(CheckpointError, match="not in the backbone's vocabulary.*987654321"):
        run_recbole("PeterRec", "demo-other", config_dict=_finetune_config(demo_data, quiet_config, ckpt))
    # a checkpoint of a model that is not a PeterRec backbone
    fake = load_checkpoint(ckpt)
    fake["meta"]["model"] = "BPR"
    atomic_torch_save(fake, str(tmp_path / "bpr.pth"))
    with pytest.raises(CheckpointError, match="model 'BPR', which PeterRec cannot fine-tune"):
        run_recbole("PeterRec", "demo-fine", config_dict=_finetune_config(demo_data, quiet_config, str(tmp_path / "bpr.pth")))
    with pytest.raises(CheckpointError, match="needs pretrained_model_file"):
        run_recbole("PeterRec", "demo-fine", config_dict=_finetune_config(demo_data, quiet_config, None))


@needs_demo
def test_two_stage_flow_from_run_recbole_cli(run_dir, demo_data):
    common = ["--show_progress=False", "--state=WARNING", f"--data_path={demo_data}", "--epochs=1",
              "--checkpoint_dir=saved", "--embedding_size=16", "--dilations=[1,4]"]
    script = os.path.join(ROOT, "run_recbole.py")
    pre = subprocess.run(
        [sys.executable, script, "--model=NextItNetP", "--dataset=demo-pre", "--MAX_ITEM_LIST_LENGTH=10",
         "--metrics=['Hit','MRR']", "--valid_metric=MRR@10"]
        + common, capture_output=True, text=True, timeout=300)
    assert pre.returncode == 0, pre.stderr[-2000:]
    ckpts = [f for f in os.listdir(run_dir / "saved") if f.startswith("NextItNetP")]
    assert len(ckpts) == 1
    fine = subprocess.run(
        [sys.executable, script, "--model=PeterRec", "--dataset=demo-fine", "--peterrec_insertion=parallel",
         f"--pretrained_model_file={run_dir / 'saved' / ckpts[0]}"] + common,
        capture_output=True, text=True, timeout=300)
    assert fine.returncode == 0, fine.stderr[-2000:]
    assert "mrr@5" in fine.stdout and "hit@5" in fine.stdout


def test_mean_user_vector_ignores_left_padding_on_ml100k(run_dir, quiet_config, tmp_path):
    """Issue 14 through RecBole's pipeline: ml-100k gender users with their full (ragged) histories; ``mean`` =
    mean of the encoder states over each user's real source positions, ``mean_with_padding`` = over every position."""
    data = str(tmp_path / "data")
    task = pdata.write_attribute_task(data, "gender", max_source_len=300)
    base = dict(quiet_config, data_path=data, peterrec_mode="scratch", embedding_size=16, dilations=[1, 4],
                train_batch_size=64)
    models = {}
    for vector in ("mean", "mean_with_padding"):
        config = Config("PeterRec", task, config_dict=dict(base, peterrec_user_vector=vector))
        train_data = data_preparation(config, create_dataset(config))[0]
        models[vector] = get_model("PeterRec")(config, train_data._dataset)
    models["mean_with_padding"].load_state_dict(models["mean"].state_dict())
    batch = next(iter(train_data))
    raw = batch[config["source_seq_field"]]
    lengths = (raw > 0).sum(dim=1)
    assert (lengths < raw.size(1)).any() and (lengths > 0).all()  # ragged: some rows carry padding
    with torch.no_grad():
        h = models["mean"].encoder(left_align(models["mean"].source_lookup[raw], lengths))
        expected = torch.stack([h[row, raw.size(1) - n:].mean(dim=0) for row, n in enumerate(lengths.tolist())])
        masked = models["mean"].user_representation(batch)
        padded = models["mean_with_padding"].user_representation(batch)
    assert torch.allclose(masked, expected, atol=1e-5)
    assert torch.allclose(padded, h.mean(dim=1), atol=1e-5)
    assert not torch.allclose(masked, padded, atol=1e-3)


@needs_demo
def test_user_vector_auto_keeps_grec_fineall_padded_mean(run_dir, quiet_config, demo_data):
    """FineAll on GRec averages every position (GRec_TF_FineAll, padding included): auto keeps it faithful."""
    ckpt = _pretrain("GRec", demo_data, quiet_config, epochs=1)["checkpoint"]
    config = Config("PeterRec", "demo-fine", config_dict=_finetune_config(demo_data, quiet_config, ckpt,
                                                                          peterrec_mode="full"))
    train_data = data_preparation(config, create_dataset(config))[0]
    assert get_model("PeterRec")(config, train_data._dataset).user_vector == "mean_with_padding"


@needs_demo
def test_near_identity_patch_init_through_peterrec(run_dir, quiet_config, demo_data):
    """At initialisation a near_identity PeterRec encodes exactly as the pretrained backbone (the unpatched head
    mode), the faithful parallel one does not; after fine-tuning the zero-initialised up-projections have moved."""
    ckpt = _pretrain("NextItNetP", demo_data, quiet_config, epochs=1)["checkpoint"]

    def build(**extra):
        config = Config("PeterRec", "demo-fine", config_dict=_finetune_config(demo_data, quiet_config, ckpt, **extra))
        train_data = data_preparation(config, create_dataset(config))[0]
        return get_model("PeterRec")(config, train_data._dataset), train_data

    plain, train_data = build(peterrec_mode="head")
    batch = next(iter(train_data))
    ids = left_align(plain.source_lookup[batch["source_seq"]], (batch["source_seq"] > 0).sum(dim=1))
    with torch.no_grad():
        reference = plain.encoder(ids)
        for insertion in INSERTIONS:
            near, _ = build(peterrec_insertion=insertion, peterrec_patch_init="near_identity")
            faithful, _ = build(peterrec_insertion=insertion, peterrec_patch_init="faithful")
            assert float((near.encoder(ids) - reference).norm() / reference.norm()) < 1e-6
            assert not torch.allclose(faithful.encoder(ids), reference, atol=1e-4)
    with pytest.raises(ConfigError, match="peterrec_patch_init"):
        build(peterrec_patch_init="zero")
    tuned = run_recbole("PeterRec", "demo-fine", config_dict=_finetune_config(
        demo_data, quiet_config, ckpt, peterrec_insertion="parallel", peterrec_patch_init="near_identity"))
    state = load_checkpoint(tuned["checkpoint"])["state_dict"]
    ups = [k for k in state if ".up.0.weight" in k]
    assert len(ups) == 2 * 2 and all(state[k].abs().sum() > 0 for k in ups)  # 2 blocks x 2 patches
    # same shapes, different function: the other form refuses the checkpoint instead of computing something else
    faithful_parallel, _ = build(peterrec_insertion="parallel", peterrec_patch_init="faithful")
    with pytest.raises(ConfigError, match="peterrec_patch_init"):
        faithful_parallel.load_state_dict(state)
    near_parallel, _ = build(peterrec_insertion="parallel", peterrec_patch_init="near_identity")
    near_parallel.load_state_dict(state)
