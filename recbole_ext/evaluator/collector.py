"""``ExtCollector``: RecBole's Collector that can hand metrics extra inputs.

A metric asks for inputs through its ``metric_need`` list, as in RecBole. Beyond RecBole's keys the
following are understood:

* ``data.item.<field>`` — a column of the ``.item`` file (or of any item feature), as a tensor
  indexed by internal item id (row 0 = PAD);
* ``data.user.<field>`` — the same for the ``.user`` file;
* ``rec.users`` — the internal user id of every evaluated row, in the order of ``rec.topk``;
* ``rec.positives`` — ``[n_pairs, 2]`` (row, item) pairs of the evaluated positives, rows counted
  across batches;
* any key registered with :func:`register_data_provider` (static, from the training data) or
  :func:`register_batch_provider` (per batch).

Per-evaluation keys are reset between evaluations so that a second evaluation does not see the rows
of the first.

``rec.items`` / ``rec.topk`` are built from one top-k per batch and the positive pairs themselves, with the same
values as RecBole's Collector (which runs top-k twice and fills a ``[batch, n_items]`` int matrix to count
positives: at a large catalogue that allocation costs more than the top-k). When the metrics need nothing but
those two keys, a trainer may hand over the top-k lists alone (:class:`TopKScores`, from a model's
``full_sort_topk``) instead of a ``[batch, n_items]`` score matrix; :meth:`ExtCollector.topk_only` says when.
"""

import torch
from recbole.evaluator.collector import Collector

from recbole_ext import distributed
from recbole_ext.compat import PER_EVALUATION_KEYS
from recbole_ext.data.dataset import require_side_info
from recbole_ext.errors import DatasetError

# key -> function(dataset, config) -> value (computed once per training set)
DATA_PROVIDERS = {}
# key -> function(scores, interaction, positive_u, positive_i, collector) -> tensor rows to append
BATCH_PROVIDERS = {}


def register_data_provider(key):
    def decorator(func):
        DATA_PROVIDERS[key] = func
        return func

    return decorator


def register_batch_provider(key):
    def decorator(func):
        BATCH_PROVIDERS[key] = func
        return func

    return decorator


def _feature_column(dataset, source, field):
    feat = dataset.item_feat if source == "item" else dataset.user_feat
    if feat is None or field not in feat.interaction:
        suffix = "item" if source == "item" else "user"
        raise DatasetError(
            f"a metric needs the {source} feature '{field}', but dataset '{dataset.dataset_name}' has no "
            f"such column: add '{field}' to the .{suffix} file and to load_col: {{{suffix}: [...]}}"
        )
    require_side_info(dataset, source, f"metric input 'data.{source}.{field}'")
    return feat[field]


def _row_users(scores, interaction, config):
    """User id per score row: one row per user in full sort, grouped rows in sampled evaluation."""
    users = interaction[config["USER_ID_FIELD"]]
    if users.shape[0] == scores.shape[0]:
        return users
    return torch.unique_consecutive(users)


@register_batch_provider("rec.users")
def _batch_users(scores, interaction, positive_u, positive_i, collector):
    return _row_users(scores, interaction, collector.config).cpu()


@register_batch_provider("rec.positives")
def _batch_positives(scores, interaction, positive_u, positive_i, collector):
    rows = positive_u.cpu() + collector.rows_seen
    return torch.stack([rows, positive_i.cpu()], dim=1)


class TopKScores:
    """Full-sort result given as each row's top-k item ids ``[B, k]`` (best first) over ``n_items`` items, in
    place of the score matrix: enough for ``rec.items`` / ``rec.topk``."""

    def __init__(self, indices, n_items):
        self.indices, self.n_items = indices, int(n_items)
        self.shape = (indices.shape[0], self.n_items)


TOPK_KEYS = ("rec.items", "rec.topk")


class ExtCollector(Collector):
    """Collector with side information, user ids and custom per-batch inputs."""

    def __init__(self, config):
        super().__init__(config)
        # save_per_user: the last evaluation's struct is kept (``last_struct``) and names its users
        self.keep_last_struct = bool(config["save_per_user"])
        self.last_struct = None
        needs = {need for metric in self.register.metrics for need in _metric_need(metric)}
        self.needs = sorted(needs | ({"rec.users"} if self.keep_last_struct else set()))
        self.batch_keys = [k for k in self.needs if k in BATCH_PROVIDERS]
        self.rows_seen = 0
        self.train_dataset = None

    def data_collect(self, train_data):
        super().data_collect(train_data)
        dataset = getattr(train_data, "_dataset", None) or train_data.dataset
        self.train_dataset = dataset
        for key in self.needs:
            if key.startswith("data.item.") or key.startswith("data.user."):
                _, source, field = key.split(".", 2)
                self.data_struct.set(key, _feature_column(dataset, source, field))
            elif key in DATA_PROVIDERS:
                self.data_struct.set(key, DATA_PROVIDERS[key](dataset, self.config))

    def topk_only(self):
        """True when every per-batch input the metrics need can be built from top-k lists alone."""
        per_batch = [key for key in self.needs if key.startswith("rec.") or key == "data.label"]
        return not self.batch_keys and all(key in TOPK_KEYS for key in per_batch)

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        if isinstance(scores_tensor, TopKScores):
            if not self.topk_only():
                raise TypeError("TopKScores given, but the metrics need more than the top-k lists: pass the scores")
            self._collect_topk(scores_tensor.indices[:, : max(self.topk)], positive_u, positive_i, scores_tensor.shape)
            self.rows_seen += scores_tensor.shape[0]
            return
        if self.register.need("rec.items") or self.register.need("rec.topk"):
            topk_idx = torch.topk(scores_tensor, max(self.topk), dim=-1).indices
            self._collect_topk(topk_idx, positive_u, positive_i, scores_tensor.shape)
        self._collect_rest(scores_tensor, interaction, positive_u, positive_i)
        for key in self.batch_keys:
            value = BATCH_PROVIDERS[key](scores_tensor, interaction, positive_u, positive_i, self)
            self.data_struct.update_tensor(key, value)
        self.rows_seen += scores_tensor.shape[0]

    def _collect_topk(self, topk_idx, positive_u, positive_i, shape):
        """``rec.items`` / ``rec.topk`` of one batch from its top-k lists and positive pairs."""
        if self.register.need("rec.items"):
            self.data_struct.update_tensor("rec.items", topk_idx)
        if self.register.need("rec.topk"):
            self.data_struct.update_tensor("rec.topk", topk_hits(topk_idx, positive_u, positive_i, shape))

    def _collect_rest(self, scores_tensor, interaction, positive_u, positive_i):
        """RecBole's collection of every key except ``rec.items`` / ``rec.topk`` (done above)."""
        register, self.register = self.register, _RegisterWithout(self.register, TOPK_KEYS)
        try:
            super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        finally:
            self.register = register

    def set_shard(self, n_real_rows, n_rows):
        """Multi-process evaluation: this process evaluates ``n_rows`` rows (its share of the
        ``DistributedSampler``), of which the first ``n_real_rows`` are real and the rest padding
        (the sampler repeats rows so that every process gets as many). :meth:`get_data_struct`
        then gathers every process's rows, so that metrics are computed on all users at once.
        ``None`` switches this off."""
        self.shard = None if n_real_rows is None else (int(n_real_rows), int(n_rows))

    def get_data_struct(self):
        rows = self.rows_seen
        struct = super().get_data_struct()
        for key in self.batch_keys:
            if key in self.data_struct:
                del self.data_struct[key]
        self.rows_seen = 0
        self.gathered = False
        if getattr(self, "shard", None) is not None:
            struct = self._gather(struct, rows)
            self.gathered = True
        # a reference, not a copy: RecBole's struct is already this evaluation's own deep copy
        self.last_struct = struct if self.keep_last_struct else None
        return struct

    def _gather(self, struct, rows):
        """Concatenate the per-evaluation rows of every process (rank order), padding dropped."""
        n_real, n_rows = self.shard
        keep = n_real if rows == n_rows else rows  # one row per sample: drop the sampler's padding
        keys = [k for k in list(PER_EVALUATION_KEYS) + list(self.batch_keys) if k in struct]
        local = {}
        for key in keys:
            value = struct.get(key)
            if key == "rec.positives":
                local[key] = value[value[:, 0] < keep]
            else:
                local[key] = value[:keep]
        parts = distributed.gather_objects((keep, local))
        offset = 0
        merged = {key: [] for key in keys}
        for part_rows, part in parts:
            for key in keys:
                value = part[key]
                if key == "rec.positives":
                    value = value.clone()
                    value[:, 0] += offset
                merged[key].append(value)
            offset += part_rows
        for key in keys:
            struct.set(key, torch.cat(merged[key], dim=0))
        return struct


class _RegisterWithout:
    """A view of a RecBole ``Register`` that reports the ``skip`` keys as not needed."""

    def __init__(self, register, skip):
        self.register, self.skip = register, skip

    def need(self, key):
        return key not in self.skip and self.register.need(key)


def topk_hits(topk_idx, positive_u, positive_i, shape):
    """RecBole's ``rec.topk`` rows ``[hit_1 .. hit_k, n_positives]`` (int) without a ``[B, N]`` matrix:
    positives are (row, item) pairs, duplicates counted once, as RecBole's ``pos_matrix[u, i] = 1`` does."""
    n_rows, n_items = shape
    device = topk_idx.device
    keys = torch.unique(positive_u.to(device).long() * n_items + positive_i.to(device).long())  # sorted
    pos_len = torch.bincount(keys // n_items, minlength=n_rows)[:n_rows]
    cand = torch.arange(n_rows, device=device).unsqueeze(1) * n_items + topk_idx
    pos_idx = torch.isin(cand, keys)
    return torch.cat((pos_idx.long(), pos_len.long().unsqueeze(1)), dim=1)  # int64, as RecBole's cat yields


def _metric_need(metric_name):
    from recbole.evaluator.register import metric_information

    return metric_information.get(metric_name, [])


__all__ = ["ExtCollector", "register_data_provider", "register_batch_provider", "PER_EVALUATION_KEYS"]
