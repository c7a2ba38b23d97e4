"""save_per_user: the test evaluation's per-user CSV beside the JSON summary (docs/compare.md)."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from recbole.evaluator.base_metric import TopkMetric
from recbole.utils import init_seed

from recbole_ext.config import Config
from recbole_ext.data.popularity import USER_GROUP_NAMES
from recbole_ext.evaluator import register_metric
from recbole_ext.evaluator.per_user import has_per_user_values, mismatched_columns, split_metrics
from recbole_ext.quick_start import run_recbole
from recbole_ext.utils import create_dataset, data_preparation

TOPK = [5, 10]


def _read(path):
    return pd.read_csv(path, dtype={"user_id": str, "user_group": str}, keep_default_na=False)


def _test_users(config_dict):
    """External tokens of the test split's users, from a fresh split with the same configuration."""
    config = Config("BPR", "ml-100k", config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])  # as run_recbole does before splitting
    dataset = create_dataset(config)
    _, _, test_data = data_preparation(config, dataset)
    uids = np.unique(test_data._dataset.inter_feat[dataset.uid_field].numpy())
    return set(dataset.id2token(dataset.uid_field, uids).astype(str))


def _assert_means_equal_result(table, test_result, decimal_place):
    for column in table.columns:
        if column in ("user_id", "user_group"):
            continue
        assert table[column].mean() == pytest.approx(test_result[column], abs=0.5 * 10**-decimal_place + 1e-12), column


def test_per_user_csv_contract_topk_metrics(run_dir, quiet_config):
    metrics = ["Recall", "NDCG", "Hit", "MRR", "Precision", "ItemCoverage"]
    config = dict(quiet_config, epochs=1, metrics=metrics, topk=TOPK, valid_metric="NDCG@10", save_per_user=True)
    result = run_recbole("BPR", "ml-100k", config_dict=config, cmd_args=[])
    summary = json.load(open(result["summary_path"]))
    path = summary["per_user"]
    assert os.path.isabs(path) and path == result["per_user"]
    assert path == os.path.abspath(result["summary_path"][: -len(".json")] + ".per_user.csv")
    assert summary["per_user_skipped"] == {"itemcoverage": "no per-user values (a set- or group-level metric)"}

    table = _read(path)
    expected = ["user_id"] + [f"{m}@{k}" for m in ("recall", "ndcg", "hit", "mrr", "precision") for k in TOPK]
    assert list(table.columns) == expected  # no user_group: the run defines no user groups
    assert all(column in result["test_result"] for column in expected[1:])  # named as in test_result
    _assert_means_equal_result(table, result["test_result"], 4)

    users = _test_users(dict(quiet_config, metrics=metrics, topk=TOPK, valid_metric="NDCG@10"))
    assert len(table) == len(users) and set(table["user_id"]) == users  # one row per test user, external tokens
    assert table["user_id"].is_unique
    # per-user values that must agree with one another, user by user
    for k in TOPK:
        assert set(np.unique(table[f"hit@{k}"])) <= {0.0, 1.0}
        assert np.array_equal(table[f"hit@{k}"] > 0, table[f"precision@{k}"] > 0)
        assert np.array_equal(table[f"hit@{k}"] > 0, table[f"recall@{k}"] > 0)
        assert np.array_equal(table[f"hit@{k}"] > 0, table[f"mrr@{k}"] >= 1.0 / k)
        hits = table[f"precision@{k}"].to_numpy() * k
        assert np.allclose(hits, np.round(hits))  # precision@k = hits / k
    assert (table["hit@5"] <= table["hit@10"]).all() and (table["mrr@5"] <= table["mrr@10"]).all()


def test_per_user_csv_with_cp_reranker_jsd_and_user_groups(run_dir, quiet_config):
    metrics = ["NDCG", "Hit", "JSD", "UserGroup"]
    config = dict(quiet_config, epochs=1, metrics=metrics, topk=[10], valid_metric="NDCG@10", rerank="cp",
                  cp_lambda=0.5, save_per_user=True, usergroup_metrics=["ndcg", "jsd"])
    result = run_recbole("BPR", "ml-100k", config_dict=config, cmd_args=[])
    table = _read(result["per_user"])
    assert list(table.columns) == ["user_id", "user_group", "ndcg@10", "hit@10", "jsd@10"]
    assert "usergroup" in result["per_user_skipped"]
    test_result = result["test_result"]
    _assert_means_equal_result(table, test_result, 4)
    # the group column names each user's group: group means are the run's usergroup values
    assert set(table["user_group"]) == set(USER_GROUP_NAMES)
    for group in USER_GROUP_NAMES:
        rows = table[table["user_group"] == group]
        for metric in ("ndcg", "jsd"):
            assert rows[f"{metric}@10"].mean() == pytest.approx(test_result[f"{metric}_{group}@10"], abs=0.5e-4 + 1e-12)
    assert (table["jsd@10"] >= 0).all() and (table["jsd@10"] <= 1).all()  # base-2 JSD lies in [0, 1]
    users = _test_users(dict(quiet_config, metrics=metrics, topk=[10], valid_metric="NDCG@10"))
    assert len(table) == len(users) and set(table["user_id"]) == users


def test_no_per_user_file_unless_asked(run_dir, quiet_config):
    result = run_recbole("Pop", "ml-100k", config_dict=dict(quiet_config, epochs=1), cmd_args=[])
    summary = json.load(open(result["summary_path"]))
    assert "per_user" not in summary and "per_user" not in result
    assert not [name for name in os.listdir(os.path.dirname(result["summary_path"])) if name.endswith(".csv")]


def test_metric_split_and_mismatch_check(quiet_config):
    config = {"metrics": ["NDCG", "GiniIndex", "JSD", "AveragePopularity", "MRR"]}
    names, skipped = split_metrics(config)
    assert names == ["ndcg", "jsd", "mrr"] and set(skipped) == {"giniindex", "averagepopularity"}
    assert has_per_user_values("Recall") and not has_per_user_values("ItemCoverage")
    table = pd.DataFrame({"user_id": ["1", "2"], "ndcg@10": [0.1, 0.2], "hit@10": [0.0, 1.0]})
    # within RecBole's rounding (half a unit of the 4th decimal) is a match; beyond it, or absent, is not
    assert mismatched_columns(table, {"ndcg@10": 0.15004, "hit@10": 0.5}, 4) == {}
    assert set(mismatched_columns(table, {"ndcg@10": 0.1501, "hit@10": 0.5}, 4)) == {"ndcg@10"}
    assert mismatched_columns(table, {"ndcg@10": 0.15, "hit@10": 0.6}, 4) == {"hit@10": (0.5, 0.6)}
    assert mismatched_columns(table, {"ndcg@10": 0.15}, 4) == {"hit@10": (0.5, None)}


@register_metric
class PerUserMismatchProbe(TopkMetric):
    """Test-only metric whose per-user values (all 0) disagree with the value it reports (0.9)."""

    metric_need = ["rec.topk"]

    def metric_info(self, pos_index, pos_len=None):
        return np.zeros(pos_index.shape, dtype=np.float64)

    def calculate_metric(self, dataobject):
        return {f"perusermismatchprobe@{k}": 0.9 for k in self.topk}


def test_a_column_that_disagrees_with_the_result_is_left_out(run_dir, quiet_config):
    config = dict(quiet_config, epochs=1, metrics=["NDCG", "PerUserMismatchProbe"], topk=[10],
                  valid_metric="NDCG@10", save_per_user=True)
    result = run_recbole("BPR", "ml-100k", config_dict=config, cmd_args=[])
    table = _read(result["per_user"])
    assert list(table.columns) == ["user_id", "ndcg@10"]  # never a column whose mean is not the reported value
    assert result["per_user_skipped"]["perusermismatchprobe@10"] == "per-user mean 0.0 is not the reported value 0.9"
    assert json.load(open(result["summary_path"]))["per_user_skipped"] == result["per_user_skipped"]


def test_user_group_column_follows_usergroup_source(run_dir, quiet_config):
    config = dict(quiet_config, epochs=1, metrics=["NDCG", "UserGroup"], topk=[10], valid_metric="NDCG@10",
                  save_per_user=True, usergroup_metrics=["ndcg"], usergroup_source="activity")
    result = run_recbole("BPR", "ml-100k", config_dict=config, cmd_args=[])
    table = _read(result["per_user"])
    assert list(table.columns) == ["user_id", "user_group", "ndcg@10"]
    assert set(table["user_group"]) == {"active", "inactive"}
    for group in ("active", "inactive"):
        mean = table.loc[table["user_group"] == group, "ndcg@10"].mean()
        assert mean == pytest.approx(result["test_result"][f"ndcg_{group}@10"], abs=0.5e-4 + 1e-12)
