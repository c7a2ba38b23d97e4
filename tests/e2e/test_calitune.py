"""End-to-end CaliTune and CP on ml-100k: backbone -> CaliTune -> evaluate with and without CP,
from the library and from run_recbole.py; bad-input errors; DMF and MultiVAE backbones."""

import os
import subprocess
import sys

import pytest
import torch
from recbole.utils import init_seed

import recbole_ext  # noqa: F401
from recbole_ext import checkpoint as ckpt
from recbole_ext.io import atomic_torch_save
from recbole_ext.config import Config
from recbole_ext.errors import CheckpointError, ConfigError
from recbole_ext.analysis import evaluate_checkpoint, export_per_user_tsv, per_user_metrics, rbo, set_reranker
from recbole_ext.quick_start import run_recbole
from recbole_ext.trainer.calitune import CaliTuneTrainer
from recbole_ext.utils import create_dataset, data_preparation, get_model
from tests.helpers import REPO as ROOT

torch.set_num_threads(1)
BACKBONE_YAML = os.path.join(ROOT, "properties", "calitune_backbone_bpr_ml-100k.yaml")
CALITUNE_YAML = os.path.join(ROOT, "properties", "calitune_ml-100k.yaml")
QUICK = {  # a small, quickly trained backbone (the benchmark uses the spec's 256-d, lr 1e-4 setting)
    "embedding_size": 64, "learning_rate": 5e-3, "epochs": 20, "eval_step": 5,
    "metrics": ["NDCG", "JSD", "UserGroup"],
}


def _quiet(base):
    return {
        "show_progress": False, "state": "WARNING", "log_wandb": False,
        "checkpoint_dir": str(base / "saved"), "results_dir": str(base / "saved" / "results"),
    }


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    base = tmp_path_factory.mktemp("calitune")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        result = run_recbole("BPR", "ml-100k", [BACKBONE_YAML], dict(QUICK, **_quiet(base)))
    return {"base": base, "result": result, "checkpoint": result["checkpoint"]}


def _calitune_dict(backbone, **extra):
    d = dict(QUICK, **_quiet(backbone["base"]))
    d.update(
        trainer="CaliTune", pretrained_model_file=backbone["checkpoint"], calitune_lambda=0.5, epochs=4,
        learning_rate=1e-3, calitune_batch_size=64, calitune_candidates=100,
    )
    d.update(extra)
    return d


def test_calitune_lowers_jsd_end_to_end(backbone, monkeypatch):
    monkeypatch.chdir(backbone["base"])
    base_test = backbone["result"]["test_result"]
    pop = run_recbole("Pop", "ml-100k", [BACKBONE_YAML], dict(_quiet(backbone["base"]), epochs=1, metrics=["NDCG"]))
    result = run_recbole("BPR", "ml-100k", [BACKBONE_YAML, CALITUNE_YAML], _calitune_dict(backbone))
    test = result["test_result"]
    assert test["jsd@10"] < base_test["jsd@10"] - 0.005
    assert test["ndcg@10"] > pop["test_result"]["ndcg@10"]
    trainer_ckpt = ckpt.load_checkpoint(result["checkpoint"])
    assert os.path.basename(result["checkpoint"]).startswith("epoch_")
    assert trainer_ckpt["meta"]["model"] == "BPR"
    # epoch 1 always improves on the initial best-so-far values -> saved
    assert os.path.exists(os.path.join(os.path.dirname(result["checkpoint"]), "epoch_1.pth"))


def test_cp_on_backbone_and_analysis(backbone, monkeypatch):
    monkeypatch.chdir(backbone["base"])
    plain, trainer, (train_data, valid_data, test_data) = evaluate_checkpoint(backbone["checkpoint"], _quiet(backbone["base"]))
    assert plain["ndcg@10"] == pytest.approx(backbone["result"]["test_result"]["ndcg@10"], abs=1e-4)
    set_reranker(trainer, "cp", cp_lambda=0.0, cp_candidates=100)
    zero = trainer.evaluate(test_data, load_best_model=False)
    assert zero["ndcg@10"] == pytest.approx(plain["ndcg@10"], abs=1e-6)
    assert zero["jsd@10"] == pytest.approx(plain["jsd@10"], abs=1e-6)
    base_frame, base_items = per_user_metrics(trainer, test_data, "base_model", return_items=True)
    set_reranker(trainer, "cp", cp_lambda=0.9)
    high = trainer.evaluate(test_data, load_best_model=False)
    assert high["jsd@10"] < plain["jsd@10"] - 0.05
    cp_frame, cp_items = per_user_metrics(trainer, test_data, "postprocessed_0.9", return_items=True)
    assert cp_frame["jsd"].mean() == pytest.approx(high["jsd@10"], abs=1e-4)
    assert base_frame["ndcg"].mean() == pytest.approx(plain["ndcg@10"], abs=1e-4)
    path = export_per_user_tsv([base_frame, cp_frame], str(backbone["base"] / "per_user.tsv.zip"))
    import pandas as pd

    table = pd.read_csv(path, sep="\t")
    assert len(table) == 2 * len(base_frame) and set(table["user_group"]) == {"mainstream", "diverse", "niche"}
    overlap, _ = rbo(base_items, cp_items, p=0.9)
    assert 0.0 <= float(overlap.min()) and float(overlap.max()) <= 1 - 0.9**10 + 1e-9
    assert float(overlap.mean()) < 1 - 0.9**10  # CP changed some lists


def test_run_recbole_cli_calitune_with_cp(backbone):
    cmd = [
        sys.executable, os.path.join(ROOT, "run_recbole.py"), "--model=BPR", "--dataset=ml-100k",
        f"--config_files={BACKBONE_YAML} {CALITUNE_YAML}", f"--pretrained_model_file={backbone['checkpoint']}",
        "--embedding_size=64", "--epochs=1", "--calitune_batch_size=64", "--rerank=cp", "--cp_lambda=0.5",
        "--metrics=['NDCG','JSD']", "--state=WARNING", "--show_progress=False",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, cwd=backbone["base"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "jsd@10" in out.stdout and "ndcg@10" in out.stdout


_DATASETS = {}


def model_dataset(config):
    return _DATASETS[id(config)]


def _model_and_config(backbone, model="BPR", **extra):
    d = _calitune_dict(backbone, **extra)
    config = Config(model, "ml-100k", [BACKBONE_YAML], d)
    dataset = create_dataset(config)
    # the backbone's split (without init_seed the split is another one, and CaliTune refuses the backbone)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, dataset)
    _DATASETS[id(config)] = train_data._dataset
    return config, get_model(model)(config, train_data._dataset)


def test_bad_input(backbone, monkeypatch, tmp_path):
    monkeypatch.chdir(backbone["base"])
    config, model = _model_and_config(backbone)
    CaliTuneTrainer(config, model)
    for key, value, match in [
        ("calitune_lambda", 1.5, "calitune_lambda"),
        ("calitune_lambda", -0.1, "calitune_lambda"),
        ("calitune_candidates", 5, "calitune_candidates"),
        ("pretrained_model_file", None, "pretrained_model_file"),
    ]:
        good = config[key]
        config[key] = value
        with pytest.raises(ConfigError, match=match):
            CaliTuneTrainer(config, model)
        config[key] = good
    config["seed"] = 111  # another seed = another random split than the backbone's
    with pytest.raises(CheckpointError, match="another data split"):
        CaliTuneTrainer(config, model)
    config["seed"] = 920
    pop_model = get_model("Pop")(config, model_dataset(config))
    with pytest.raises(ConfigError, match="supports the backbones"):
        CaliTuneTrainer(config, pop_model)
    saved = ckpt.load_checkpoint(backbone["checkpoint"])
    other = dict(saved, meta=dict(saved["meta"], dataset="ml-1m"))
    atomic_torch_save(other, str(tmp_path / "other.pth"))
    config["pretrained_model_file"] = str(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="ml-1m"):
        CaliTuneTrainer(config, model)
    state = dict(saved["state_dict"])
    state["item_embedding.weight"] = state["item_embedding.weight"][:100]
    atomic_torch_save(dict(saved, state_dict=state), str(tmp_path / "fewer_items.pth"))
    config["pretrained_model_file"] = str(tmp_path / "fewer_items.pth")
    with pytest.raises(CheckpointError, match="item_embedding"):
        CaliTuneTrainer(config, model)


@pytest.mark.parametrize(
    "model,backbone_keys,freeze",
    [
        ("DMF", {"user_embedding_size": 32, "item_embedding_size": 32, "user_hidden_size_list": [32],
                 "item_hidden_size_list": [32], "learning_rate": 1e-3, "epochs": 1, "eval_step": 1}, True),
        ("MultiVAE", {"epochs": 3, "learning_rate": 1e-3, "eval_step": 3}, False),
    ],
)
def test_other_backbones(backbone, monkeypatch, model, backbone_keys, freeze):
    base = backbone["base"]
    monkeypatch.chdir(base)
    keys = dict(_quiet(base), metrics=["NDCG", "JSD"], **backbone_keys)
    first = run_recbole(model, "ml-100k", [BACKBONE_YAML], keys)
    tuned = run_recbole(
        model, "ml-100k", [BACKBONE_YAML, CALITUNE_YAML],
        dict(keys, trainer="CaliTune", pretrained_model_file=first["checkpoint"], epochs=2, calitune_batch_size=128,
             learning_rate=1e-3, calitune_lambda=1.0, calitune_freeze_items=freeze),
    )
    assert 0.0 <= tuned["test_result"]["jsd@10"] <= 1.0
    assert tuned["test_result"]["jsd@10"] != first["test_result"]["jsd@10"]
    if freeze:  # only the user side moved
        before = ckpt.load_checkpoint(first["checkpoint"])["state_dict"]
        after = ckpt.load_checkpoint(tuned["checkpoint"])["state_dict"]
        item_keys = [k for k in before if k.startswith("item_")]
        user_keys = [k for k in before if k.startswith("user_")]
        assert item_keys and user_keys
        assert all(torch.equal(before[k], after[k]) for k in item_keys)
        assert any(not torch.equal(before[k], after[k]) for k in user_keys)


def _fit(backbone, **extra):
    config, model = _model_and_config(backbone, calitune_seed=111, **extra)
    trainer = CaliTuneTrainer(config, model)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    trainer.fit(train_data, valid_data, saved=True, verbose=False)
    return trainer, valid_data


def test_valid_jsd_target_reports_the_selected_epoch(backbone, monkeypatch):
    from recbole_ext.trainer.calitune.trainer import select_by_valid_jsd_target

    monkeypatch.chdir(backbone["base"])
    first, _ = _fit(backbone, epochs=4)
    jsds = sorted(r["jsd"] for r in first.history)
    target = jsds[len(jsds) // 2]  # about half of the epochs qualify (same seed: the same trajectory)
    trainer, valid_data = _fit(backbone, epochs=4, calitune_select="valid_jsd_target", calitune_valid_jsd_target=target)
    assert [round(r["jsd"], 6) for r in trainer.history] == [round(r["jsd"], 6) for r in first.history]
    chosen = select_by_valid_jsd_target([(r["epoch"], r["ndcg"], r["jsd"]) for r in trainer.history], target)
    assert trainer.selected["epoch"] == chosen and trainer.best_valid_result["jsd_target_met"]
    # the weights in memory and in the checkpoint evaluation loads are that epoch's: re-scoring validation
    # gives its metrics again
    _, again = trainer._valid_epoch(valid_data)
    row = trainer.history[chosen - 1]
    assert again["ndcg"] == pytest.approx(row["ndcg"], abs=1e-6) and again["jsd"] == pytest.approx(row["jsd"], abs=1e-6)
    saved = ckpt.load_checkpoint(trainer.saved_model_file)["state_dict"]
    assert all(torch.equal(saved[k].cpu(), v.cpu()) for k, v in trainer.model.state_dict().items())


def test_valid_jsd_target_unmet_falls_back_loudly(backbone, monkeypatch):
    monkeypatch.chdir(backbone["base"])
    trainer, _ = _fit(backbone, epochs=2, calitune_select="valid_jsd_target", calitune_valid_jsd_target=0.0)
    lowest = min(trainer.history, key=lambda r: r["jsd"])
    assert trainer.selected["epoch"] == lowest["epoch"]
    assert trainer.best_valid_result["jsd_target_met"] is False
    config, model = _model_and_config(backbone, calitune_select="valid_jsd_target")
    with pytest.raises(ConfigError, match="calitune_valid_jsd_target"):
        CaliTuneTrainer(config, model)
