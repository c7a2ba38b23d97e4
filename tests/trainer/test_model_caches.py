"""Issue 14, stale embeddings: RecBole's graph models cache their full-sort embeddings
(``restore_user_e`` / ``restore_item_e``) and clear them only in ``calculate_loss``. Trainers that change the
weights otherwise (MoRec), evaluation and checkpoint loading must clear them, or the numbers are the old
model's. Unit tests on a LightGCN instance, then MoRec post-training of LightGCN end to end."""

import json
import os

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_ext import checkpoint as ckpt
from recbole_ext.analysis import evaluate_checkpoint
from recbole_ext.config import Config
from recbole_ext.data import morec_data
from recbole_ext.quick_start import build_model_and_trainer, load_data_and_model, run_recbole
from recbole_ext.utils import create_dataset, data_preparation
from tests.helpers import REPO, tiny_config, write_tiny_dataset

CACHE = ("restore_user_e", "restore_item_e")


@pytest.fixture
def lightgcn(run_dir, quiet_config):
    write_tiny_dataset(str(run_dir))
    config = Config("LightGCN", "tiny", config_dict=tiny_config(str(run_dir), quiet_config, n_layers=2))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model, trainer = build_model_and_trainer(config, train)
    return model, trainer, train, test


def _users(model):
    return Interaction({model.USER_ID: torch.arange(1, 6)})


def _fresh_scores(model, users):
    """Full-sort scores computed from the current weights, without the cache."""
    user_e, item_e = model.forward()
    return user_e[users] @ item_e.t()


def test_invalidate_model_caches_on_lightgcn(lightgcn):
    model, trainer, _, _ = lightgcn
    model.eval()
    inter = _users(model)
    with torch.no_grad():
        before = model.full_sort_predict(inter).view(5, -1).clone()
        assert all(getattr(model, name) is not None for name in CACHE)  # full_sort_predict filled the cache
        model.user_embedding.weight.mul_(-2.0)  # a weight change outside calculate_loss (an optimiser step)
        model.item_embedding.weight.add_(0.5)
        stale = model.full_sort_predict(inter).view(5, -1)
        assert torch.equal(stale, before)  # RecBole scores the cached, old model
        assert trainer.invalidate_model_caches() == list(CACHE)
        assert all(getattr(model, name) is None for name in CACHE)
        assert trainer.invalidate_model_caches() == []  # nothing left to clear
        after = model.full_sort_predict(inter).view(5, -1)
        fresh = _fresh_scores(model, inter[model.USER_ID])
    assert torch.allclose(after, fresh, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(after, before, atol=1e-3)


def test_evaluate_and_restore_model_clear_the_cache(lightgcn):
    model, trainer, train, test = lightgcn
    trainer.collect_train_data(train)
    with torch.no_grad():
        model.eval()
        model.full_sort_predict(_users(model))  # cache of the initial weights
        state = {k: v.clone() for k, v in model.state_dict().items()}
        model.user_embedding.weight.mul_(-1.0)  # reverses every user's ranking
    # evaluate scores the weights as they are: the cache of the initial weights is dropped first
    flipped = trainer.evaluate(test, load_best_model=False)
    assert all(getattr(model, name) is not None for name in CACHE)  # refilled during the evaluation
    with torch.no_grad():
        model.user_embedding.weight.mul_(-1.0)
    original = trainer.evaluate(test, load_best_model=False)
    assert flipped != original
    # loading weights clears a cache computed before, also one stored in an old checkpoint
    with torch.no_grad():
        model.user_embedding.weight.mul_(-1.0)
        trainer.invalidate_model_caches()
        model.full_sort_predict(_users(model))
        flipped_cache = {name: getattr(model, name).clone() for name in CACHE}
    ckpt.restore_model(model, {"state_dict": state, "other_parameter": ckpt.encode(flipped_cache)})
    assert all(getattr(model, name) is None for name in CACHE)
    with torch.no_grad():
        inter = _users(model)
        assert torch.allclose(model.full_sort_predict(inter).view(5, -1), _fresh_scores(model, inter[model.USER_ID]),
                              rtol=1e-6, atol=1e-6)
    assert trainer.evaluate(test, load_best_model=False) == original


def test_clear_model_caches_leaves_weights_with_a_cache_name_alone():
    module = torch.nn.Module()
    module.i_embedding = torch.nn.Embedding(3, 2)  # a layer, not DMF's cached item tower
    module.restore_user_e = torch.nn.Parameter(torch.ones(2))
    module.register_buffer("restore_entity_e", torch.zeros(2))
    module.restore_item_e = torch.ones(3, 2)
    assert ckpt.clear_model_caches(module) == ["restore_item_e"]
    assert module.restore_item_e is None
    assert isinstance(module.i_embedding, torch.nn.Embedding) and module.restore_user_e.shape == (2,)
    assert module.restore_entity_e.shape == (2,)


# ------------------------------------------------------------------ MoRec post-training of LightGCN
YAML = os.path.join(REPO, "properties", "morec_ml-100k.yaml")
DATASET = "ml-100k-morec-small"


def _run(**extra):
    config = {"show_progress": False, "state": "WARNING", "log_wandb": False, "checkpoint_dir": "saved",
              "results_dir": os.path.join("saved", "results"), "embedding_size": 16, "n_layers": 2,
              "train_batch_size": 256, "eval_batch_size": 4096, "morec_plot": False}
    config.update(extra)
    return run_recbole("LightGCN", DATASET, config_file_list=[YAML], config_dict=config)


@pytest.mark.parametrize("loss", ["bpr", "ce"])  # ce trains through full_sort_predict (crashed on the cache)
def test_morec_lightgcn_reports_the_model_it_saves(run_dir, loss):
    morec_data.prepare_ml100k("dataset", dataset_name=DATASET, max_users=120)
    pre = _run(epochs=2, eval_step=2)
    post = _run(epochs=2, trainer="MoRec", pretrained_model_file=pre["checkpoint"], learning_rate=0.01,
                morec_loss=loss)
    assert post["config"]["trainer"] == "MoRec" and post["checkpoint"] != pre["checkpoint"]
    reported = dict(post["test_result"])
    # (a) the test result MoRec reports is the one of the model it saved, evaluated afresh
    fresh, _, _ = evaluate_checkpoint(post["checkpoint"])
    assert fresh == reported
    # (b) post-training changed the model: the numbers are not the pretrained model's
    assert reported != dict(pre["test_result"])
    assert reported["popkl@10"] != pre["test_result"]["popkl@10"]
    # every validation scores the current weights: MoRec's epochs see other values than the pretrained model
    trajectory = [p for p in os.listdir("saved/results") if p.startswith("MoRec-LightGCN") and p.endswith(".json")]
    epochs = json.load(open(os.path.join("saved/results", trajectory[0])))["epochs"]
    assert [e["epoch"] for e in epochs] == [-1, 0, 1]
    assert epochs[-1]["valid"] != epochs[0]["valid"]
    # the checkpoint holds no cache, and loading it leaves none
    saved = ckpt.load_checkpoint(post["checkpoint"])
    assert not set(saved["other_parameter"] or {}) & set(ckpt.MODEL_CACHE_ATTRIBUTES)
    _, model, *_ = load_data_and_model(post["checkpoint"])
    assert model.restore_user_e is None and model.restore_item_e is None
