"""Checkpoints (weights-only, atomic, resume), load_data_and_model, JSON summary, CLI, collector
extensions, the re-ranking hook, and learned quality on ml-100k."""

import glob
import json
import os

import numpy as np
import pytest
import torch
from recbole.evaluator.base_metric import AbstractMetric, TopkMetric
from recbole.utils import EvaluatorType

from recbole_ext.checkpoint import load_checkpoint
from recbole_ext.io import atomic_torch_save
from recbole_ext.config import Config
from recbole_ext.errors import CheckpointError, DatasetError
from recbole_ext.evaluator import register_metric
from recbole_ext.evaluator.register import EXT_METRICS
from recbole_ext.quick_start import build_model_and_trainer, load_data_and_model, run_recbole
from recbole_ext.trainer import RERANKERS, Reranker, register_reranker
from recbole_ext.utils import create_dataset, data_preparation
from tests.helpers import run_cli, tiny_config, write_tiny_dataset

# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------
def test_checkpoint_round_trip_and_resume(run_dir, quiet_config):
    root = write_tiny_dataset(str(run_dir))
    config = Config("BPR", "tiny", config_dict=tiny_config(root, quiet_config, epochs=2, eval_step=1))
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    model, trainer = build_model_and_trainer(config, train_data)
    trainer.fit(train_data, valid_data, saved=True)
    path = trainer.saved_model_file
    raw = torch.load(path, weights_only=True)
    assert raw["meta"]["format"] == "recbole_ext.checkpoint"
    assert raw["epoch"] in (0, 1) and isinstance(raw["best_valid_score"], float)
    assert not glob.glob(os.path.join(os.path.dirname(path), ".tmp-*"))  # atomic: no temp left

    # resume into a fresh model/trainer that runs one more epoch
    config3 = Config("BPR", "tiny", config_dict=tiny_config(root, quiet_config, epochs=raw["epoch"] + 2))
    model3, trainer3 = build_model_and_trainer(config3, train_data)
    trainer3.resume_checkpoint(path)
    assert trainer3.start_epoch == raw["epoch"] + 1
    assert trainer3.best_valid_score == raw["best_valid_score"]
    for name, tensor in model3.state_dict().items():
        assert torch.equal(tensor, raw["state_dict"][name])
    assert trainer3.optimizer.state_dict()["state"]  # optimiser moments restored
    trainer3.fit(train_data, valid_data, saved=True)
    assert trainer3.train_loss_dict and min(trainer3.train_loss_dict) == raw["epoch"] + 1


def test_resume_refuses_other_model(run_dir, quiet_config):
    root = write_tiny_dataset(str(run_dir))
    result = run_recbole("BPR", "tiny", config_dict=tiny_config(root, quiet_config, epochs=1), cmd_args=[])
    config = Config("Pop", "tiny", config_dict=tiny_config(root, quiet_config))
    train_data, _, _ = data_preparation(config, create_dataset(config))
    _, trainer = build_model_and_trainer(config, train_data)
    with pytest.raises(CheckpointError, match="belongs to model 'BPR'"):
        trainer.resume_checkpoint(result["checkpoint"])


def test_builtin_checkpoint_with_numpy_state_loads_into_load_data_and_model(run_dir, quiet_config):
    result = run_recbole("EASE", "ml-100k", config_dict=dict(quiet_config), cmd_args=[])
    raw = torch.load(result["checkpoint"], weights_only=True)  # numpy/scipy state encoded as tensors
    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(result["checkpoint"])
    assert config["model"] == "EASE" and isinstance(model.item_similarity, np.ndarray)
    assert np.allclose(model.item_similarity, raw["other_parameter"]["item_similarity"]["value"].numpy())
    # the reloaded model evaluates to the same test result
    from recbole_ext.utils import get_trainer

    trainer = get_trainer(config["MODEL_TYPE"], config["model"], config)(config, model)
    trainer.collect_train_data(train_data)
    again = trainer.evaluate(test_data, load_best_model=False)
    assert again["ndcg@10"] == pytest.approx(result["test_result"]["ndcg@10"], abs=1e-4)


def test_foreign_and_truncated_checkpoints_are_refused(run_dir, quiet_config):
    foreign = run_dir / "foreign.pth"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a recbole_ext checkpoint"):
        load_checkpoint(foreign)
    # stock RecBole format: a pickled object with protocol 4
    stock = run_dir / "stock.pth"
    torch.save({"config": Config("BPR", "ml-100k", config_dict=quiet_config)}, stock, pickle_protocol=4)
    with pytest.raises(CheckpointError, match="not a recbole_ext checkpoint"):
        load_checkpoint(stock)
    result = run_recbole("Pop", "ml-100k", config_dict=dict(quiet_config, epochs=1), cmd_args=[])
    data = open(result["checkpoint"], "rb").read()
    truncated = run_dir / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(run_dir / "missing.pth")


def test_runs_in_the_same_second_never_share_a_checkpoint(run_dir, quiet_config):
    config = Config("Pop", "ml-100k", config_dict=quiet_config)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    _, first = build_model_and_trainer(config, train_data)
    _, second = build_model_and_trainer(config, train_data)
    assert first.saved_model_file != second.saved_model_file
    first._save_checkpoint(0, verbose=False)
    _, third = build_model_and_trainer(config, train_data)
    assert third.saved_model_file not in (first.saved_model_file, second.saved_model_file)
    assert os.path.isfile(first.saved_model_file)


def test_atomic_save_leaves_nothing_on_failure(run_dir):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    target = run_dir / "saved" / "x.pth"
    with pytest.raises(RuntimeError):
        atomic_torch_save({"bad": Unpicklable()}, str(target))
    assert os.listdir(run_dir / "saved") == []


# ------------------------------------------------------------------------------------------------
# run summary and CLI
# ------------------------------------------------------------------------------------------------
def test_json_summary(run_dir, quiet_config):
    result = run_recbole("Pop", "ml-100k", config_dict=dict(quiet_config, epochs=1), cmd_args=[])
    summary = json.load(open(result["summary_path"]))
    assert summary["model"] == "Pop" and summary["dataset"] == "ml-100k"
    assert summary["test_result"] == result["test_result"]
    assert summary["best_valid_result"] == result["best_valid_result"]
    assert summary["config"]["epochs"] == 1 and summary["config"]["MODEL_TYPE"] == "TRADITIONAL"
    assert summary["train_seconds"] >= 0 and summary["eval_seconds"] >= 0
    assert os.path.isfile(summary["checkpoint"])


def test_cli_runs_and_reports(run_dir):
    proc = run_cli(["--model=Pop", "--dataset=ml-100k", "--epochs=1", "--state=WARNING", "--show_progress=False"], run_dir)
    assert proc.returncode == 0, proc.stderr
    assert "Pop on ml-100k" in proc.stdout and "ndcg@10" in proc.stdout
    path = proc.stdout.strip().splitlines()[-1].split("summary written to ")[1]
    assert json.load(open(run_dir / path))["model"] == "Pop"


def test_cli_errors_exit_nonzero_with_message(run_dir):
    proc = run_cli(["--model=Popp", "--dataset=ml-100k"], run_dir)
    assert proc.returncode == 2 and "unknown model 'Popp'" in proc.stderr and "Pop" in proc.stderr
    proc = run_cli(["--model=Pop", "--dataset=nowhere", "--state=WARNING"], run_dir)
    assert proc.returncode == 2 and "nowhere.inter" in proc.stderr
    assert not glob.glob(str(run_dir / "saved" / "*.pth"))  # nothing half-written


# ------------------------------------------------------------------------------------------------
# collector extensions and re-ranking hook
# ------------------------------------------------------------------------------------------------
@register_metric
class PriceAtKProbe(TopkMetric):
    """Mean price of the top-k items and the number of evaluated rows (test-only metric)."""

    metric_need = ["rec.items", "rec.users", "data.item.price"]

    def calculate_metric(self, dataobject):
        items = dataobject.get("rec.items")[:, : max(self.topk)]
        price = dataobject.get("data.item.price")
        users = dataobject.get("rec.users")
        return {
            f"priceatkprobe@{max(self.topk)}": round(price[items].mean().item(), 4),
            "priceatkprobe_rows": float(users.shape[0]),
            "priceatkprobe_distinct": float(torch.unique(users).numel()),
        }


@register_reranker("test_cheapest")
class CheapestFirst(Reranker):
    """Test re-ranker: among the model's top-20 candidates, cheapest items first."""

    def prepare(self, trainer, eval_data):
        self.price = eval_data._dataset.item_feat["price"].to(trainer.device)

    def rerank(self, scores, interaction):
        candidates = torch.topk(scores, 20, dim=1).indices
        order = torch.argsort(self.price[candidates], dim=1, stable=True)
        return torch.gather(candidates, 1, order)


def test_metric_registry_injection():
    from recbole.evaluator.register import metric_information, metric_types, metrics_dict

    assert "priceatkprobe" in EXT_METRICS and metrics_dict["priceatkprobe"] is PriceAtKProbe
    assert metric_types["priceatkprobe"] == EvaluatorType.RANKING
    assert "data.item.price" in metric_information["priceatkprobe"]
    with pytest.raises(ValueError, match="already RecBole's"):

        @register_metric
        class NDCG(AbstractMetric):  # noqa: F811  (would shadow RecBole's NDCG)
            metric_need = []
            metric_type = EvaluatorType.RANKING


def test_side_information_user_ids_reset_and_rerank(run_dir, quiet_config):
    root = write_tiny_dataset(str(run_dir), n_users=60, n_items=40)
    metrics = ["Recall", "NDCG", "PriceAtKProbe"]
    base = tiny_config(root, quiet_config, metrics=metrics, epochs=1)
    config = Config("BPR", "tiny", config_dict=base)
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    model, trainer = build_model_and_trainer(config, train_data)
    trainer.fit(train_data, valid_data, saved=False)
    first = trainer.evaluate(test_data, load_best_model=False)
    second = trainer.evaluate(test_data, load_best_model=False)
    n_rows = test_data._dataset.inter_feat.length and first["priceatkprobe_rows"]
    assert first["priceatkprobe_rows"] == second["priceatkprobe_rows"] == n_rows  # reset between evaluations
    assert first["priceatkprobe_distinct"] == first["priceatkprobe_rows"]  # one row per user, ids collected
    assert first == second

    reranked_config = Config("BPR", "tiny", config_dict=dict(base, rerank="test_cheapest"))
    _, reranked = build_model_and_trainer(reranked_config, train_data)
    reranked.model.load_state_dict(model.state_dict())
    reranked.collect_train_data(train_data)
    after = reranked.evaluate(test_data, load_best_model=False)
    assert after["priceatkprobe@5"] < first["priceatkprobe@5"]  # every list re-ordered cheapest first


def test_unknown_reranker(run_dir, quiet_config):
    from recbole_ext.errors import UnknownNameError
    from recbole_ext.trainer.rerank import build_reranker

    config = Config("BPR", "ml-100k", config_dict=dict(quiet_config, rerank="nope"))
    with pytest.raises(UnknownNameError, match="unknown re-ranker 'nope'"):
        build_reranker(config)
    assert "test_cheapest" in RERANKERS


def test_missing_item_field_for_metric(run_dir, quiet_config):
    root = write_tiny_dataset(str(run_dir), item_file=False)
    config_dict = tiny_config(root, quiet_config, metrics=["PriceAtKProbe", "NDCG"], epochs=1)
    config_dict["load_col"] = {"inter": ["user_id", "item_id", "rating", "timestamp"]}
    with pytest.raises(DatasetError, match="no such column: add 'price' to the .item file"):
        run_recbole("BPR", "tiny", config_dict=config_dict, cmd_args=[])


# ------------------------------------------------------------------------------------------------
# learned quality on real data
# ------------------------------------------------------------------------------------------------
def test_bpr_learns_beyond_popularity_on_ml100k(run_dir, quiet_config):
    common = dict(quiet_config, metrics=["Recall", "NDCG"], valid_metric="NDCG@10")
    pop = run_recbole("Pop", "ml-100k", config_dict=dict(common, epochs=1), cmd_args=[])
    ease = run_recbole("EASE", "ml-100k", config_dict=dict(common), cmd_args=[])
    assert ease["test_result"]["ndcg@10"] > 1.2 * pop["test_result"]["ndcg@10"]
