"""Full-sort evaluation in user blocks (``eval_block_mb``, :mod:`recbole_ext.data.dataloader`).

On ml-100k through RecBole's pipeline: the same trained model is evaluated once with the block loader and
once with RecBole's batching (``eval_block_mb: 0``) over the same test split; the top-k lists, the hit
matrix, the users' order and every metric must be identical — for BPR, for BPR re-ranked by CP and for
SASRec. Models that score through RecBole's predict fallback keep RecBole's batching.
"""

import pytest
import torch

from recbole_ext.config import Config
from recbole_ext.data.dataloader import (
    BYTES_PER_CELL, MIB, BlockedFullSortEvalDataLoader, users_per_block, with_recbole_batching,
)
from recbole_ext.errors import ConfigError
from recbole_ext.quick_start import setup_run

torch.set_num_threads(1)

METRICS = ["Recall", "NDCG", "MRR", "Hit", "Precision", "ItemCoverage", "AveragePopularity", "GiniIndex",
           "TailPercentage", "JSD", "MisCalKL", "UserGroup"]


def _run(model, quiet_config, train=True, **extra):
    config_dict = {**quiet_config, "epochs": 1, "metrics": METRICS, "topk": [5, 10], "valid_metric": "NDCG@10",
                   "metric_decimal_place": 12, **extra}
    run = setup_run(Config(model, "ml-100k", config_dict=config_dict, cmd_args=[]))
    if train:
        run.trainer.fit(run.train_data, saved=False)
    else:  # evaluation only needs the training data collected (initial weights score as well)
        run.trainer.collect_train_data(run.train_data)
    return run


def _evaluate(trainer, loader):
    """Metrics and the collected data struct (top-k lists, hits, users) of one evaluation."""
    captured = {}
    evaluate = trainer.evaluator.evaluate

    def capture(struct):
        captured["struct"] = struct
        return evaluate(struct)

    trainer.evaluator.evaluate = capture
    try:
        result = trainer.evaluate(loader, load_best_model=False)
    finally:
        del trainer.evaluator.evaluate
    return dict(result), captured["struct"]


def _assert_same_evaluation(run):
    blocked = run.test_data
    recbole = with_recbole_batching(blocked)
    assert isinstance(blocked, BlockedFullSortEvalDataLoader)
    assert len(blocked) < len(recbole), "the test must compare different batchings"
    result_blocks, struct_blocks = _evaluate(run.trainer, blocked)
    result_recbole, struct_recbole = _evaluate(run.trainer, recbole)
    for key in ("rec.items", "rec.topk", "rec.users"):
        assert torch.equal(struct_blocks.get(key), struct_recbole.get(key)), key
    assert result_blocks == result_recbole
    return len(blocked), len(recbole)


def test_bpr_blocks_give_recbole_batchings_lists_and_metrics(run_dir, quiet_config):
    run = _run("BPR", quiet_config)
    n_items = run.test_data._dataset.item_num
    assert run.test_data.step == users_per_block(256, n_items, 4096 // n_items)  # defaults: 256 MiB, 4096
    blocks, recbole = _assert_same_evaluation(run)
    assert (blocks, recbole) == (1, -(-run.test_data.sample_size // (4096 // n_items)))


def test_cp_reranked_lists_do_not_depend_on_the_blocks(run_dir, quiet_config):
    run = _run("BPR", quiet_config, rerank="cp", cp_lambda=0.5)
    assert run.trainer.reranker is not None
    _assert_same_evaluation(run)


def test_sequential_model_blocks_give_recbole_batchings_metrics(run_dir, quiet_config):
    run = _run("SASRec", quiet_config, train=False, eval_batch_size=64, MAX_ITEM_LIST_LENGTH=20, hidden_size=16, inner_size=32,
               n_layers=1, n_heads=1, loss_type="CE", train_neg_sample_args=None,
               metrics=["Recall", "NDCG", "MRR", "Hit", "ItemCoverage", "JSD"])
    assert run.test_data.step > 64  # RecBole: eval_batch_size users per batch
    _assert_same_evaluation(run)


def test_zero_budget_and_predict_fallback_keep_recbole_batching(run_dir, quiet_config):
    run = _run("BPR", quiet_config, eval_block_mb=0)
    assert run.test_data.step == max(4096 // run.test_data._dataset.item_num, 1)
    run = _run("NeuMF", quiet_config, metrics=["Recall", "NDCG"], mf_embedding_size=8, mlp_embedding_size=8,
               mlp_hidden_size=[8])
    assert run.test_data.step == max(4096 // run.test_data._dataset.item_num, 1)  # no full_sort_predict


def test_users_per_block_follows_the_budget():
    assert users_per_block(0, 1683, 2) == 2
    assert users_per_block(1, 1024, 2) == MIB // (1024 * BYTES_PER_CELL)
    assert users_per_block(1, 10**9, 2) == 2  # never fewer users than RecBole's batch
    assert users_per_block(1, 10**9, 0) == 1


@pytest.mark.parametrize("value", [-1, 1.5, "big", True])
def test_bad_budget_is_refused(run_dir, quiet_config, value):
    with pytest.raises(ConfigError, match="eval_block_mb"):
        _run("Pop", quiet_config, eval_block_mb=value, metrics=["Recall"], valid_metric="Recall@10")
