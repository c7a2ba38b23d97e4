"""End-to-end tests of the BaM models through RecBole's pipeline and run_recbole.py (issue 3)."""

import json
import os
import subprocess
import sys

import pytest
import torch

import recbole_ext  # noqa: F401
from recbole_ext import Config, create_dataset
from recbole_ext.data.bam_converter import convert
from recbole_ext.errors import DatasetError
from recbole_ext.quick_start import run_recbole
from tests.helpers import REPO as ROOT

torch.set_num_threads(1)
PROPS = os.path.join(ROOT, "properties", "bam_ml-100k.yaml")
# short runs: fewer positions, bigger batches, fewer negatives than the paper's defaults
FAST = {"MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 512, "sampled_n": 256, "learning_rate": 0.003,
        "iters_per_epoch": 190}
EPOCHS = 2


def test_converter_keeps_order_and_feeds_recbole(tmp_path, quiet_config):
    src = tmp_path / "tiny"
    lines = []
    for user in range(1, 6):  # interleaved users, each chronological in file order
        for step in range(6):
            lines.append((user, (user * 7 + step * 3) % 20 + 1))
    lines.sort(key=lambda ui: ui[1] % 3)  # users' lines not contiguous
    src.write_text("\n".join(f"{u} {i}" if n % 4 else f"{u} {i} none" for n, (u, i) in enumerate(lines)) + "\n")
    info = convert(str(src), str(tmp_path / "out"), "tiny")
    assert (info["users"], info["interactions"]) == (5, 30)
    rows = [r.split("\t") for r in open(info["inter_file"]).read().splitlines()]
    assert rows[0] == ["user_id:token", "item_id:token", "timestamp:float"]
    for user in range(1, 6):
        mine = [(float(t), int(i)) for u, i, t in rows[1:] if int(u) == user]
        assert [i for _, i in sorted(mine)] == [i for u, i in lines if u == user]
    config = Config(
        "BaM_REMI", "tiny",
        config_dict={**quiet_config, "data_path": info["data_path"], "sampled_n": 8, "load_col": None},
    )
    dataset = create_dataset(config)
    assert dataset.inter_num == 30 and dataset.user_num == 6  # + PAD

    bad = tmp_path / "bad"
    bad.write_text("1 2\n3\n")
    with pytest.raises(DatasetError, match="bad:2"):
        convert(str(bad), str(tmp_path / "out"))
    bad.write_text("1 2\n0 5\n")
    with pytest.raises(DatasetError, match="1-based"):
        convert(str(bad), str(tmp_path / "out"))


def test_properties_let_early_stopping_end_runs(quiet_config):
    """The released runs peaked as late as 72k iterations: the cap must not end a run before early stopping."""
    config = Config("BaM_REMI", "ml-100k", config_file_list=[PROPS], config_dict=quiet_config)
    assert config["train_sampler"] == "user" and config["stopping_step"] == 15
    assert config["epochs"] * config["iters_per_epoch"] >= 1_000_000  # the original's max_iter cap (1000 x 1000)


def test_bam_remi_beats_pop_on_ml100k(run_dir, quiet_config):
    pop = run_recbole("Pop", "ml-100k", config_file_list=[PROPS], config_dict={**quiet_config, "epochs": 1}, saved=False)
    bam = run_recbole(
        "BaM_REMI", "ml-100k", config_file_list=[PROPS],
        config_dict={**quiet_config, **FAST, "epochs": EPOCHS}, saved=True,
    )
    assert bam["config"]["selection"] == "p" and bam["config"]["multi_loss"] is True
    assert bam["test_result"]["ndcg@10"] > pop["test_result"]["ndcg@10"]
    # routing diagnostic: logged every epoch, plot saved next to the checkpoint
    plot = os.path.splitext(bam["checkpoint"])[0] + "-routing.png"
    assert os.path.getsize(plot) > 0
    history = json.load(open(os.path.splitext(bam["checkpoint"])[0] + "-routing.json"))
    assert history["selection"] == "p" and len(history["epochs"]) == EPOCHS
    for epoch in history["epochs"]:
        assert sum(epoch["selected"]) == pytest.approx(1.0) and sum(epoch["argmax"]) == pytest.approx(1.0)

    # evaluation through the top-k-only path (full_sort_topk, both scorers) = RecBole's score-matrix path
    from recbole_ext.quick_start import load_data_and_model
    from recbole_ext.utils import get_trainer

    config, model, _, train_data, _, test_data = load_data_and_model(bam["checkpoint"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"], config)(config, model)
    trainer.collect_train_data(train_data)
    assert trainer._topk_only_eval()
    results = {}
    assert model.eval_scoring == "auto" and model.auto_scoring in ("fp32", "bf16_rescore")
    for scoring in ("auto", "fp32", "bf16_rescore"):
        model.eval_scoring = scoring
        results[scoring] = trainer.evaluate(test_data, load_best_model=False)
    trainer.topk_only_eval = False
    model.eval_scoring = "fp32"
    results["score matrix"] = trainer.evaluate(test_data, load_best_model=False)
    assert results["auto"] == results["fp32"] == results["bf16_rescore"] == results["score matrix"]
    assert results["fp32"]["ndcg@10"] == pytest.approx(bam["test_result"]["ndcg@10"])


@pytest.mark.parametrize("model", ["MIND", "ComiRec", "REMI"])
def test_backbone_by_selection_grid_runs(run_dir, quiet_config, model):
    tiny = {**quiet_config, **FAST, "epochs": 1, "embedding_size": 16, "linear_size": 8,
            "train_batch_size": 2048, "sampled_n": 64, "MAX_ITEM_LIST_LENGTH": 10, "iters_per_epoch": 6}
    for selection in ("hard", "p", "l"):
        result = run_recbole(model, "ml-100k", config_file_list=[PROPS],
                             config_dict={**tiny, "selection": selection}, saved=False)
        assert set(result["test_result"]) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
        assert 0 < result["test_result"]["recall@20"] <= 1


def test_run_recbole_cli_bam_remi(run_dir):
    cmd = [sys.executable, os.path.join(ROOT, "run_recbole.py"), "--model=BaM_REMI", "--dataset=ml-100k",
           f"--config_files={PROPS}", "--epochs=1", "--selection=l", "--T=0.5", "--train_batch_size=2048",
           "--sampled_n=64", "--MAX_ITEM_LIST_LENGTH=10", "--iters_per_epoch=6", "--show_progress=False", "--state=WARNING",
           "--results_dir=saved/results"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [os.path.join("saved/results", f) for f in os.listdir("saved/results")]
    summary = json.load(open(summaries[0]))
    assert summary["config"]["selection"] == "l" and summary["config"]["T"] == 0.5
    assert summary["test_result"]["ndcg@10"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["BaM_MIND", "BaM_ComiRec", "BaM_REMI"])
@pytest.mark.parametrize("selection", ["hard", "p", "l"])
def test_grid_through_cli_full_defaults(run_dir, model, selection):
    """The 3 x 3 grid with the paper's defaults (batch 128, 1280 negatives), 1 epoch each."""
    cmd = [sys.executable, os.path.join(ROOT, "run_recbole.py"), f"--model={model}", "--dataset=ml-100k",
           f"--config_files={PROPS}", "--epochs=1", f"--selection={selection}", "--show_progress=False",
           "--state=WARNING"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
