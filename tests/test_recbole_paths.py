"""RecBole's own entry points after ``import recbole_ext`` (compat C14, C15): ``recbole.quick_start.run_recbole``,
``load_data_and_model``, S3Rec's pretrain -> fine-tune, NeuMF's pretrained embeddings — on ml-100k, through
RecBole's own trainers — and the refusal of checkpoints that only full unpickling could read."""

import glob
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

from recbole_ext import compat

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def recbole_argv(run_dir, monkeypatch):
    """RecBole's Config reads sys.argv: give it none of pytest's arguments."""
    monkeypatch.setattr(sys, "argv", sys.argv[:1])
    return run_dir


def _keys(quiet_config, **extra):
    return dict(quiet_config, epochs=1, train_batch_size=4096, eval_batch_size=100000, **extra)


@pytest.mark.parametrize("model", ["BPR", "EASE"])  # EASE keeps NumPy / SciPy matrices in other_parameter
def test_recbole_run_recbole_then_load_data_and_model(recbole_argv, quiet_config, model):
    from recbole.quick_start import load_data_and_model, run_recbole

    result = run_recbole(model=model, dataset="ml-100k", config_dict=_keys(quiet_config))
    (path,) = glob.glob(os.path.join("saved", f"{model}-*.pth"))
    stored = torch.load(path, weights_only=True)  # no allow-list needed
    assert stored["format"] == compat.CHECKPOINT_FORMAT and stored["config"]["model"] == model

    config, loaded, _, train_data, _, test_data = load_data_and_model(path)
    assert isinstance(config, Config) and config["model"] == model
    for name, tensor in stored["state_dict"].items():
        assert torch.equal(loaded.state_dict()[name].cpu(), tensor)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, loaded)
    trainer.eval_collector.data_collect(train_data)
    again = trainer.evaluate(test_data, load_best_model=False)
    assert dict(again) == dict(result["test_result"])  # the reloaded model scores what the run reported


def test_recbole_s3rec_pretrain_then_finetune(recbole_argv, quiet_config):
    from recbole.quick_start import run_recbole

    keys = _keys(quiet_config, pretrain_epochs=1, save_step=1, train_neg_sample_args=None, MAX_ITEM_LIST_LENGTH=10,
                 hidden_size=16, inner_size=32, n_layers=1, n_heads=1, item_attribute="class",
                 user_inter_num_interval="[20,25]",
                 load_col={"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "class"]})
    run_recbole(model="S3Rec", dataset="ml-100k", config_dict=dict(keys, train_stage="pretrain"))
    pretrained = os.path.join("saved", "S3Rec-ml-100k-1.pth")  # PretrainTrainer.save_pretrained_model's name
    weights = torch.load(pretrained, weights_only=True)["state_dict"]

    finetune = dict(keys, train_stage="finetune", pre_model_path=pretrained)
    config = Config(model="S3Rec", dataset="ml-100k", config_dict=finetune)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = get_model("S3Rec")(config, train_data._dataset)  # S3Rec.__init__ loads pre_model_path
    for name, tensor in weights.items():
        assert torch.equal(model.state_dict()[name], tensor), name
    result = run_recbole(model="S3Rec", dataset="ml-100k", config_dict=finetune)
    assert set(result["test_result"]) >= {"recall@10", "ndcg@10"}


def test_recbole_neumf_dump_parameters_then_load_pretrain(recbole_argv, quiet_config):
    keys = _keys(quiet_config, mf_pretrain_path="mf.pth", mlp_pretrain_path="mlp.pth")
    config = Config(model="NeuMF", dataset="ml-100k", config_dict=dict(keys, mf_train=True, mlp_train=False))
    train_data, _, _ = data_preparation(config, create_dataset(config))
    mf = get_model("NeuMF")(config, train_data._dataset)
    mf.dump_parameters()  # RecBole pickles the whole model here; through C14 its state_dict
    config["mf_train"], config["mlp_train"] = False, True
    mlp = get_model("NeuMF")(config, train_data._dataset)
    mlp.dump_parameters()

    config["mf_train"], config["use_pretrain"] = True, True
    neumf = get_model("NeuMF")(config, train_data._dataset)  # NeuMF.load_pretrain
    assert torch.equal(neumf.user_mf_embedding.weight, mf.user_mf_embedding.weight)
    assert torch.equal(neumf.item_mlp_embedding.weight, mlp.item_mlp_embedding.weight)
    expected_bias = 0.5 * (mf.predict_layer.bias + mlp.predict_layer.bias)
    assert torch.allclose(neumf.predict_layer.bias, expected_bias)


class _Payload:
    """Unpickling this creates a file: the stand-in for code run from a checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _stock_recbole_checkpoint(path, quiet_config):
    """A checkpoint as RecBole's Trainer._save_checkpoint writes it without recbole_ext; returns its weights."""
    config = Config(model="BPR", dataset="ml-100k", config_dict=_keys(quiet_config))
    train_data, _, _ = data_preparation(config, create_dataset(config))
    weights = get_model("BPR")(config, train_data._dataset).state_dict()
    state = {"config": config, "epoch": 0, "cur_step": 0, "best_valid_score": np.float64(0.1), "state_dict": weights,
             "other_parameter": None, "optimizer": {}}
    torch.save(state, path, pickle_protocol=4)  # the real torch.save, not C14's
    return weights


def test_recbole_load_sites_refuse_pickled_objects(recbole_argv, quiet_config):
    import importlib

    from recbole.quick_start import load_data_and_model

    marker = os.path.abspath("code-ran")
    torch.save({"config": {"model": "BPR"}, "state_dict": {}, "payload": _Payload(marker)}, "evil.pth")
    _stock_recbole_checkpoint("stock.pth", quiet_config)
    for path in ("evil.pth", "stock.pth"):
        with pytest.raises(compat.UnsafeCheckpointError, match="recbole_ext does not load"):
            load_data_and_model(path)
        for name in compat.TORCH_LOAD_MODULES:  # every RecBole module that calls torch.load
            with pytest.raises(compat.UnsafeCheckpointError):
                importlib.import_module(name).torch.load(path, weights_only=False)
    assert not os.path.exists(marker)


def test_recbole_trusted_stock_checkpoint_converts_once(recbole_argv, quiet_config):
    """docs/recbole.md: a stock RecBole checkpoint the user trusts is converted once with weights_only_state."""
    from recbole.quick_start import load_data_and_model

    weights = _stock_recbole_checkpoint("stock.pth", quiet_config)
    trusted = torch.load("stock.pth", weights_only=False)  # the user's own, deliberate decision
    torch.save(compat.weights_only_state(trusted), "converted.pth")
    config, model, *_ = load_data_and_model("converted.pth")
    assert config["model"] == "BPR"
    for name, tensor in weights.items():
        assert torch.equal(model.state_dict()[name].cpu(), tensor)


RAYLESS_SCRIPT = textwrap.dedent(
    """
    import sys

    class NoRay:  # Ray is not installed
        def find_spec(self, name, path=None, target=None):
            if name == "ray" or name.startswith("ray."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NoRay())
    import torch
    torch.set_num_threads(1)
    import recbole_ext
    from recbole.quick_start import run_recbole
    import recbole.quick_start.quick_start as quick_start
    result = run_recbole(model="BPR", dataset="ml-100k", config_dict={
        "epochs": 1, "train_batch_size": 4096, "show_progress": False, "state": "WARNING",
        "checkpoint_dir": "saved", "log_wandb": False})
    print("recall@10", result["test_result"]["recall@10"])
    try:
        quick_start.tune.report
    except ImportError as err:
        print("tune:", err)
    try:
        quick_start.objective_function({"model": "BPR", "dataset": "ml-100k"})  # fails before training
    except ImportError as err:
        print("objective_function:", err)
    """
)


def test_recbole_quick_start_runs_without_ray(run_dir):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", RAYLESS_SCRIPT], cwd=run_dir, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert 0 <= float(lines[-3].split()[1]) <= 1
    for line, name in zip(lines[-2:], ("tune:", "objective_function:")):
        assert line.startswith(name) and "requirements-tune.txt" in line and ".[tune]" in line


def test_import_recbole_ext_imports_no_ray_and_real_tune_on_use():
    script = (
        "import sys, recbole_ext, recbole.quick_start.quick_start as q; print('ray' in sys.modules); "
        "print(callable(q.tune.report)); print('ray.tune' in sys.modules)"
    )
    pytest.importorskip("ray.tune")
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["False", "True", "True"]


def test_recbole_ext_s3rec_pretrain_file_is_our_checkpoint(run_dir, quiet_config):
    """Through recbole_ext's run_recbole, RecBole's PretrainTrainer writes one of our checkpoints: the pretrain
    run's test evaluation reloads it, and the fine-tune run starts from its weights."""
    from recbole_ext.checkpoint import load_checkpoint
    from recbole_ext.quick_start import run_recbole

    keys = _keys(quiet_config, pretrain_epochs=1, save_step=1, train_neg_sample_args=None, MAX_ITEM_LIST_LENGTH=10,
                 hidden_size=16, inner_size=32, n_layers=1, n_heads=1, item_attribute="class",
                 user_inter_num_interval="[20,25]",
                 load_col={"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "class"]})
    run_recbole("S3Rec", "ml-100k", config_dict=dict(keys, train_stage="pretrain"), cmd_args=[])
    pretrained = os.path.join("saved", "S3Rec-ml-100k-1.pth")
    assert load_checkpoint(pretrained)["meta"]["model"] == "S3Rec"
    result = run_recbole("S3Rec", "ml-100k", config_dict=dict(keys, train_stage="finetune", pre_model_path=pretrained),
                         cmd_args=[])
    assert set(result["test_result"]) >= {"recall@10", "ndcg@10"}
