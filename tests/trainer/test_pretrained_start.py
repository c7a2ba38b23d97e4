"""``pretrained_model_file`` with a plain trainer: the model starts from the checkpoint's weights (it was silently
ignored before, so `--pretrained_model_file=X --epochs=0` scored an untrained model)."""

import pytest

from recbole_ext.errors import CheckpointError
from recbole_ext.quick_start import run_recbole

METRICS = {"metrics": ["NDCG", "Hit", "JSD"], "topk": [10], "valid_metric": "NDCG@10"}


def test_epochs_zero_evaluates_the_checkpoint_it_names(run_dir, quiet_config):
    trained = run_recbole("BPR", "ml-100k", config_dict=dict(quiet_config, epochs=2, **METRICS))
    again = run_recbole("BPR", "ml-100k", config_dict=dict(
        quiet_config, epochs=0, pretrained_model_file=trained["checkpoint"], **METRICS))
    assert again["test_result"] == trained["test_result"]
    fresh = run_recbole("BPR", "ml-100k", config_dict=dict(quiet_config, epochs=0, **METRICS))
    assert fresh["test_result"] != trained["test_result"]  # what the key used to give: untrained weights
    with_cp = run_recbole("BPR", "ml-100k", config_dict=dict(
        quiet_config, epochs=0, pretrained_model_file=trained["checkpoint"], rerank="cp", cp_lambda=0.0, **METRICS))
    assert with_cp["test_result"]["ndcg@10"] == pytest.approx(trained["test_result"]["ndcg@10"], abs=1e-4)


def test_a_checkpoint_of_another_split_is_refused(run_dir, quiet_config):
    trained = run_recbole("BPR", "ml-100k", config_dict=dict(quiet_config, epochs=1, **METRICS))
    with pytest.raises(CheckpointError, match="split"):
        run_recbole("BPR", "ml-100k", config_dict=dict(
            quiet_config, epochs=0, seed=7, pretrained_model_file=trained["checkpoint"], **METRICS))
