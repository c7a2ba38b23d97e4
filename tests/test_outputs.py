"""What a run writes (issue 16): names carrying the trainer / re-ranker, no checkpoint for evaluation-only runs,
file modes that follow the umask, plain numbers and short epoch lines in the log, TensorBoard scalars of our
trainers, readable plots."""

import glob
import importlib.util
import json
import logging
import os
import re
import stat
from collections import OrderedDict

import numpy as np
import pytest
from PIL import Image

from recbole_ext.data import morec_data
from recbole_ext.io import atomic_write_text
from recbole_ext.quick_start import run_recbole
from recbole_ext.trainer.trainer import format_result, labelled_checkpoint_name, plain_result, run_label, run_title
from tests.helpers import REPO as ROOT

ANSI = re.compile(r"\x1b\[[0-9;]*m")
METRICS = {"metrics": ["NDCG", "Hit", "JSD"], "topk": [10], "valid_metric": "NDCG@10"}
STAMP = r"[A-Z][a-z]{2}-\d\d-\d{4}_\d\d-\d\d-\d\d-\d+(-\d+)?"  # RecBole's local time + our process id
MOREC_YAML = os.path.join(ROOT, "properties", "morec_ml-100k.yaml")
BACKBONE_YAML = os.path.join(ROOT, "properties", "calitune_backbone_bpr_ml-100k.yaml")
CALITUNE_YAML = os.path.join(ROOT, "properties", "calitune_ml-100k.yaml")
BAM_YAML = os.path.join(ROOT, "properties", "bam_ml-100k.yaml")


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _messages(caplog, level=logging.DEBUG):
    return [ANSI.sub("", r.getMessage()) for r in caplog.records if r.levelno >= level]


def _scalar_tags(root="log_tensorboard"):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = {}
    for path in glob.glob(os.path.join(root, "**", "events.out.tfevents.*"), recursive=True):
        acc = EventAccumulator(path, size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            tags[tag] = [e.step for e in acc.Scalars(tag)]
    return tags


def _cli():
    spec = importlib.util.spec_from_file_location("run_recbole_cli", os.path.join(ROOT, "run_recbole.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


# --- names --------------------------------------------------------------------------------------
def test_run_label_and_title():
    base = {"model": "BPR", "dataset": "ml-100k", "trainer": None, "rerank": None}
    assert run_label(base) == "BPR" and run_title(base) == "BPR on ml-100k"
    assert run_label(dict(base, trainer="MoRec")) == "BPR-MoRec"
    assert run_label(dict(base, trainer="CaliTuneTrainer")) == "BPR-CaliTune"
    assert run_label(dict(base, rerank="cp")) == "BPR-CP" and run_title(dict(base, rerank="cp")) == "BPR + CP on ml-100k"
    assert run_label(dict(base, trainer="CaliTune", rerank="CP")) == "BPR-CaliTune-CP"
    assert run_label(dict(base, rerank="none")) == "BPR"
    # RecBole's <model>-<time>.pth keeps its pattern, with the label in the model's place
    name = os.path.join("saved", "BPR-Dec-01-2026_06-25-47.pth")
    assert labelled_checkpoint_name(name, dict(base, trainer="MoRec")) == os.path.join(
        "saved", "BPR-MoRec-Dec-01-2026_06-25-47.pth")
    assert labelled_checkpoint_name(name, base) == name


def test_plain_result_numbers():
    result = OrderedDict([("ndcg@10", np.float64(0.1234)), ("n", np.int64(3)), ("ok", True)])
    plain = plain_result(result)
    assert isinstance(plain, OrderedDict) and list(plain) == ["ndcg@10", "n", "ok"]
    assert type(plain["ndcg@10"]) is float and type(plain["n"]) is int and plain["ok"] is True
    assert "np." not in repr(plain) and "np." not in format_result(result)
    assert format_result(result) == "ndcg@10 0.1234  n 3  ok True"


# --- a plain run, an evaluation-only run, modes, log lines ---------------------------------------
def test_names_eval_only_modes_and_plain_log(run_dir, quiet_config, umask022, caplog, capsys):
    caplog.set_level(logging.INFO)
    trained = run_recbole("BPR", "ml-100k", config_dict=dict(quiet_config, epochs=1, train_batch_size=4096, save_per_user=True, **METRICS))
    assert re.fullmatch(rf"BPR-{STAMP}\.pth", os.path.basename(trained["checkpoint"]))
    assert os.path.basename(trained["summary_path"]).startswith("BPR-ml-100k-")
    assert trained["title"] == "BPR on ml-100k"
    for path in (trained["checkpoint"], trained["summary_path"], trained["per_user"]):
        assert _mode(path) == 0o644, path  # umask 022: what open() would give, not mkstemp's 0600

    messages = _messages(caplog)
    assert not [m for m in messages if "np.float64" in m or "OrderedDict" in m]
    test_line = [m for m in messages if m.startswith("test result")]
    assert test_line and re.search(r"ndcg@10 0\.\d{4}\b", test_line[0])

    # evaluation only (epochs: 0) from the trained weights, re-ranked: no new checkpoint, title names CP
    checkpoints = set(glob.glob("saved/*.pth"))
    args = ["--model=BPR", "--dataset=ml-100k", "--epochs=0", f"--pretrained_model_file={trained['checkpoint']}",
            "--rerank=cp", "--cp_lambda=0.0", "--show_progress=False", "--state=INFO", "--log_wandb=False",
            "--checkpoint_dir=saved", "--results_dir=saved/results", "--metrics=['NDCG','Hit','JSD']", "--topk=[10]",
            "--valid_metric=NDCG@10"]
    capsys.readouterr()
    assert _cli()(args) == 0
    out = capsys.readouterr().out
    assert "BPR + CP on ml-100k" in out and "checkpoint: None" in out and "np.float64" not in out
    assert set(glob.glob("saved/*.pth")) == checkpoints
    summary_path = re.search(r"summary written to (\S+)", out).group(1)
    assert os.path.basename(summary_path).startswith("BPR-CP-ml-100k-")
    summary = json.load(open(summary_path))
    assert summary["checkpoint"] is None and summary["title"] == "BPR + CP on ml-100k"
    # the loaded weights were evaluated (cp_lambda 0 = the backbone's ranking)
    assert summary["test_result"]["ndcg@10"] == pytest.approx(trained["test_result"]["ndcg@10"], abs=1e-4)
    assert not [m for m in _messages(caplog) if "np.float64" in m]

    # asked for: a checkpoint of the evaluated weights, named after the run
    asked = run_recbole("BPR", "ml-100k", config_dict=dict(
        quiet_config, epochs=0, pretrained_model_file=trained["checkpoint"], rerank="cp", cp_lambda=0.0,
        save_eval_only_checkpoint=True, **METRICS))
    assert re.fullmatch(rf"BPR-CP-{STAMP}\.pth", os.path.basename(asked["checkpoint"]))
    assert os.path.isfile(asked["checkpoint"]) and _mode(asked["checkpoint"]) == 0o644
    assert asked["test_result"] == summary["test_result"]


def test_atomic_writes_follow_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write_text(str(tmp_path / "private.txt"), "x")
        os.umask(0o022)
        atomic_write_text(str(tmp_path / "shared.txt"), "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "private.txt") == 0o600 and _mode(tmp_path / "shared.txt") == 0o644


# --- MoRec ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def morec_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("morec_outputs")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        morec_data.prepare_ml100k("dataset")
        pre = run_recbole("BPR", "ml-100k-morec", [MOREC_YAML], dict(
            show_progress=False, state="WARNING", log_wandb=False, checkpoint_dir="saved",
            results_dir="saved/results", epochs=1, eval_step=1, train_batch_size=2048, eval_batch_size=8192))
    return base, pre["checkpoint"]


def test_morec_outputs(morec_dir, monkeypatch, umask022, caplog):
    base, pretrained = morec_dir
    monkeypatch.chdir(base)
    caplog.set_level(logging.DEBUG)
    result = run_recbole("BPR", "ml-100k-morec", [MOREC_YAML], dict(
        show_progress=False, state="INFO", log_wandb=False, checkpoint_dir="saved", results_dir="saved/results",
        trainer="MoRec", epochs=2, pretrained_model_file=pretrained, train_batch_size=2048, eval_batch_size=8192))
    assert re.fullmatch(rf"BPR-MoRec-{STAMP}\.pth", os.path.basename(result["checkpoint"]))
    assert os.path.basename(result["summary_path"]).startswith("BPR-MoRec-ml-100k-morec-")
    assert result["title"] == "BPR + MoRec on ml-100k-morec"

    lines = [m for m in _messages(caplog, logging.INFO) if m.startswith("MoRec epoch")]
    assert len(lines) == 2 and all(len(line) < 200 for line in lines), lines
    assert all("β" in line and "valid ndcg@10" in line and "loss" in line for line in lines)
    detail = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "MoRec epoch 1 detail" in r.getMessage()]
    assert detail and "sampling_weights" in detail[0]
    assert not [m for m in _messages(caplog) if "np.float64" in m]

    tags = _scalar_tags()
    for tag in ("MoRec/beta/mean", "MoRec/objective_loss/accuracy", "MoRec/objective_loss/fairness",
                "MoRec/sampling_weight/fairness/g1", "MoRec/sampling_weight/alignment/g1",
                "MoRec/signal/alignment/g1", "MoRec/valid/ndcg@10"):
        assert tags.get(tag) == [0, 1], tag

    trajectory = glob.glob("saved/results/MoRec-BPR-*-trajectory.json")[0]
    png = trajectory[: -len(".json")] + ".png"
    assert json.load(open(trajectory))["title"] == "BPR + MoRec on ml-100k-morec"
    assert Image.open(png).size == (1200, 960)  # 10 x 8 in at 120 dpi
    assert _mode(png) == 0o644 and _mode(trajectory) == 0o644


# --- CaliTune ------------------------------------------------------------------------------------
def test_calitune_outputs(run_dir, quiet_config, caplog):
    keys = dict(quiet_config, embedding_size=16, metrics=["NDCG", "JSD"], topk=[10], valid_metric="NDCG@10")
    backbone = run_recbole("BPR", "ml-100k", [BACKBONE_YAML], dict(keys, epochs=1, eval_step=1, trainer=None))
    caplog.set_level(logging.DEBUG)
    tune = dict(keys, trainer="CaliTune", pretrained_model_file=backbone["checkpoint"], learning_rate=1e-3,
                calitune_batch_size=256, calitune_candidates=50, state="INFO")
    result = run_recbole("BPR", "ml-100k", [BACKBONE_YAML, CALITUNE_YAML], dict(tune, epochs=2))
    assert os.path.basename(os.path.dirname(result["checkpoint"])).startswith("BPR-CaliTune-")
    assert os.path.basename(result["summary_path"]).startswith("BPR-CaliTune-ml-100k-")
    lines = [m for m in _messages(caplog, logging.INFO) if m.startswith("CaliTune epoch")]
    assert len(lines) == 2 and all(len(line) < 200 and "jsd@10" in line for line in lines), lines
    assert [m for m in _messages(caplog) if m.startswith("CaliTune epoch 2 detail") and "calibration" in m]
    assert not [m for m in _messages(caplog) if "np.float64" in m]
    tags = _scalar_tags()
    for tag in ("CaliTune/loss/total", "CaliTune/loss/accuracy", "CaliTune/loss/calibration"):
        assert tags.get(tag) == [1, 2], tag
    for tag in ("CaliTune/valid/ndcg", "CaliTune/valid/jsd"):
        assert tags.get(tag) == [0, 1, 2], tag  # 0: the backbone

    # evaluation only: the backbone as loaded, no checkpoint written
    checkpoints = set(glob.glob("saved/**/*.pth", recursive=True))
    only = run_recbole("BPR", "ml-100k", [BACKBONE_YAML, CALITUNE_YAML], dict(tune, epochs=0))
    assert only["checkpoint"] is None and set(glob.glob("saved/**/*.pth", recursive=True)) == checkpoints
    assert only["test_result"]["ndcg@10"] == pytest.approx(backbone["test_result"]["ndcg@10"], abs=1e-4)


# --- BaM -----------------------------------------------------------------------------------------
def test_bam_routing_outputs(run_dir, quiet_config, umask022):
    fast = {"MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 512, "sampled_n": 64, "iters_per_epoch": 10}
    result = run_recbole("BaM_REMI", "ml-100k", [BAM_YAML], dict(quiet_config, **fast, epochs=2, eval_step=2))
    stem = os.path.splitext(result["checkpoint"])[0]
    history = json.load(open(stem + "-routing.json"))
    assert history["title"] == "BaM_REMI on ml-100k" and [e["epoch"] for e in history["epochs"]] == [0, 1]
    assert Image.open(stem + "-routing.png").size == (960, 540)  # 8 x 4.5 in at 120 dpi
    assert _mode(stem + "-routing.png") == 0o644
    tags = _scalar_tags()
    k = len(history["epochs"][0]["selected"])
    for i in range(k):
        assert tags.get(f"BaM/routing_selected/interest{i}") == [0, 1]
        assert tags.get(f"BaM/routing_argmax/interest{i}") == [0, 1]
