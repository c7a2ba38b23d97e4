"""Full-sort evaluation in user blocks sized by a memory budget (``eval_block_mb``).

RecBole's ``FullSortEvalDataLoader`` gives a general model ``max(eval_batch_size // n_items, 1)`` users per
batch — the ``eval_batch_size`` rows of RecBole's predict fallback (each user repeated over every item) —
even when the model scores all items at once with ``full_sort_predict``: 2 users on ml-100k with the
default 4096, so evaluation (and a re-ranker such as CP, which runs once per batch) pays ~470 batch
overheads. :class:`BlockedFullSortEvalDataLoader` instead scores as many users per batch as fit a memory
budget: ``eval_block_mb`` MiB for the ``[users, n_items]`` block at :data:`BYTES_PER_CELL` bytes per
(user, item) cell, never fewer users than RecBole's own batch (so an explicit ``eval_batch_size`` still
gets at least what it asked for). Only the batching changes: every user's scores, top-k lists and
metrics are those of RecBole's batching (``tests/data/test_eval_blocks.py``).

``eval_block_mb: 0`` restores RecBole's batching. Models that score through RecBole's predict fallback
(no ``full_sort_predict`` / ``full_sort_topk`` of their own) keep it too: there each cell is a full
interaction row, not 4 bytes, and ``eval_batch_size`` is what bounds them.
"""

from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.model.abstract_recommender import AbstractRecommender

from recbole_ext.errors import ConfigError

# fp32 score + int32 positive mask (RecBole's collector) + room for same-shape temporaries (masking, top-k,
# a model's own [users, n_items] intermediates): an estimate, the budget is not a hard cap
BYTES_PER_CELL = 16
MIB = 1 << 20


def scores_all_items(model_class):
    """True when the model scores every item of a user at once (its own ``full_sort_predict`` or
    ``full_sort_topk``) rather than through RecBole's per-(user, item) predict fallback."""
    if model_class is None:
        return False
    own = getattr(model_class, "full_sort_predict", None) is not AbstractRecommender.full_sort_predict
    return own or callable(getattr(model_class, "full_sort_topk", None))


def block_budget_mb(config):
    """``eval_block_mb`` checked: a whole number of MiB >= 0 (0 = RecBole's batching)."""
    value = config["eval_block_mb"]
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise ConfigError(f"eval_block_mb must be a whole number of MiB >= 0 (0 = RecBole's batching), got {value!r}")
    return int(value)


def users_per_block(budget_mb, n_items, recbole_users):
    """Users whose ``[users, n_items]`` block fits ``budget_mb`` MiB, at least ``recbole_users``."""
    if budget_mb <= 0:
        return recbole_users
    return max(budget_mb * MIB // (max(n_items, 1) * BYTES_PER_CELL), recbole_users, 1)


class BlockedFullSortEvalDataLoader(FullSortEvalDataLoader):
    """RecBole's full-sort evaluation loader, with batches of :func:`users_per_block` users."""

    def _init_batch_size_and_step(self):
        super()._init_batch_size_and_step()  # RecBole's step: users per batch (general and sequential)
        if not scores_all_items(getattr(self.config, "model_class", None)):
            return
        n_items = self._dataset.item_num
        users = users_per_block(block_budget_mb(self.config), n_items, self.step)
        if users != self.step:
            self.step = users
            self.set_batch_size(users if self.is_sequential else users * n_items)


def with_recbole_batching(loader):
    """The same split as ``loader`` (a :class:`BlockedFullSortEvalDataLoader`), batched as RecBole does
    (``eval_block_mb: 0``): for side-by-side checks and benchmarks of the two batchings."""
    config, saved = loader.config, loader.config["eval_block_mb"]
    config["eval_block_mb"] = 0
    try:
        return BlockedFullSortEvalDataLoader(config, loader._dataset, loader._sampler, shuffle=False)
    finally:
        config["eval_block_mb"] = saved
