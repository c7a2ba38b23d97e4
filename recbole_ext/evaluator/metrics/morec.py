"""MoRec's evaluation metrics (arXiv 2310.13260) as RecBole metric plugins.

RecBole metric names are class names lower-cased; the MoRec metric strings map as follows:

=================  ==============  ==============================================================
MoRec / UniRec     recbole_ext     value
=================  ==============  ==============================================================
``rhit@k``         ``rhit@k``      mean over evaluated positives of price(target) * 1[rank < k]
``rndcg@k``        ``rndcg@k``     mean of price(target) * 1[rank < k] / log2(rank + 2)
``pop-kl@k``       ``popkl@k``     KL(p* || q) over alignment groups (smaller is better)
``min-hit@k``      ``minhit@k``    min over fairness groups g of mean hit of positives in g
``min-ndcg@k``     ``minndcg@k``   same for single-positive ndcg
``min-rhit@k``     ``minrhit@k``   same for rhit
``min-rndcg@k``    ``minrndcg@k``  same for rndcg
=================  ==============  ==============================================================

Every metric is computed per evaluated (row, positive item) pair from RecBole's ranked list
(``rec.items``; full-sort scores are already history-masked). With MoRec's leave-one-out protocol
(one positive per row) a pair is a row and ``hit``/``ndcg`` here equal RecBole's hit/ndcg. With several
positives per row each positive is scored separately (UniRec's one_vs_all would additionally hide the
other positives). Prices are raw (not normalised); groups come from the ``.item`` fields named by
``morec_weight_field`` / ``morec_fair_field`` / ``morec_align_field``; p* from ``morec_align_dist``
(defaults in ``properties/overall.yaml``: these metrics run with any trainer).

pop-kl: q per block of rows (share of top-k slots per alignment group), averaged over blocks and
renormalised — UniRec's mean over its evaluation batches (quirk M10). Default
``morec_popkl_aggregate: block``: rows in user order (RecBole's full-sort order, also after gathering
the processes of a distributed run) cut into blocks of ``morec_popkl_block_size`` (100 = UniRec's
``test_batch_size``): UniRec's value on the same lists, whatever ``eval_batch_size`` is. ``batch`` =
per RecBole evaluation batch (a full-sort batch holds ``eval_batch_size // n_items`` users, so the value
depends on it); ``global`` pools all slots. KL uses UniRec's +1e-10 smoothing without
renormalisation (M11).
"""

import numpy as np
import torch
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType

from recbole_ext.data import morec_data
from recbole_ext.errors import ConfigError
from recbole_ext.evaluator.collector import register_batch_provider, register_data_provider
from recbole_ext.evaluator.register import register_metric, topk_list
from recbole_ext.options import check_choices

EPS = 1e-10


@register_data_provider("morec.item_weight")
def _provide_weight(dataset, config):
    return morec_data.item_weight(dataset, config)


@register_data_provider("morec.item_fair_group")
def _provide_fair(dataset, config):
    return morec_data.item_groups(dataset, config, "fair")


@register_data_provider("morec.item_align_group")
def _provide_align(dataset, config):
    return morec_data.item_groups(dataset, config, "align")


@register_data_provider("morec.align_expected")
def _provide_expected(dataset, config):
    return morec_data.expected_align_distribution(dataset, config)


@register_batch_provider("morec.batch_start")
def _provide_batch_start(scores, interaction, positive_u, positive_i, collector):
    """Index of the first row of this evaluation batch, for every row (batch identity for pop-kl)."""
    return torch.full((scores.shape[0],), collector.rows_seen, dtype=torch.long)


def user_blocks(users, block_size):
    """Block id of every row: rows ordered by user id (stable, so a user's rows keep their order), then
    cut into consecutive blocks of ``block_size`` rows — UniRec's evaluation batches of its user-ordered
    test file."""
    order = torch.sort(users.long(), stable=True).indices
    blocks = torch.empty_like(order)
    blocks[order] = torch.arange(len(order)) // block_size
    return blocks


def pair_ranks(rec_items, positives):
    """0-based rank of each positive in its row's top list (``len`` of the list when not in it)."""
    rec_items = rec_items.long()
    rows, items = positives[:, 0].long(), positives[:, 1].long()
    match = rec_items[rows] == items.unsqueeze(1)
    found = match.any(dim=1)
    rank = torch.where(found, match.float().argmax(dim=1), torch.full_like(rows, rec_items.shape[1]))
    return rank.numpy(), items.numpy()


def per_pair_values(rank, topk, price=None, kind="hit"):
    """[n_pairs, len(topk)] values of hit / ndcg (optionally price-weighted) at each cutoff."""
    ks = np.asarray(topk)[None, :]
    r = rank[:, None]
    inside = (r < ks).astype(float)
    value = inside if kind == "hit" else inside / np.log2(r + 2.0)
    if price is not None:
        value = value * price[:, None]
    return value


class _PairMetric(AbstractMetric):
    """Base: per-positive values from ``rec.items`` + ``rec.positives``."""

    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.items", "rec.positives"]
    kind = "hit"
    weighted = False
    least_misery = False
    name = None

    def __init__(self, config):
        super().__init__(config)
        self.topk = topk_list(config)

    def calculate_metric(self, dataobject):
        rank, items = pair_ranks(dataobject.get("rec.items"), dataobject.get("rec.positives"))
        price = dataobject.get("morec.item_weight").numpy()[items] if self.weighted else None
        values = per_pair_values(rank, self.topk, price, self.kind)
        if self.least_misery:
            groups = dataobject.get("morec.item_fair_group").numpy()[items]
            present = np.unique(groups[groups > 0])
            sums = np.zeros((groups.max() + 1, len(self.topk)))
            np.add.at(sums, groups, values)
            counts = np.bincount(groups, minlength=groups.max() + 1)
            result = (sums[present] / counts[present, None]).min(axis=0) if len(present) else np.zeros(len(self.topk))
        else:
            result = values.mean(axis=0) if len(values) else np.zeros(len(self.topk))
        return {f"{self.name}@{k}": round(float(v), self.decimal_place) for k, v in zip(self.topk, result)}


@register_metric
class RHit(_PairMetric):
    """MoRec ``rhit@k``: price of the target item if it is in the top k, averaged over positives."""

    metric_need = _PairMetric.metric_need + ["morec.item_weight"]
    weighted, name = True, "rhit"


@register_metric
class RNDCG(_PairMetric):
    """MoRec ``rndcg@k``: price(target) / log2(rank + 2) if ranked in the top k (single-positive ndcg)."""

    metric_need = _PairMetric.metric_need + ["morec.item_weight"]
    kind, weighted, name = "ndcg", True, "rndcg"


@register_metric
class MinHit(_PairMetric):
    """MoRec ``min-hit@k`` (least misery): minimum over fairness groups of the group's mean hit."""

    metric_need = _PairMetric.metric_need + ["morec.item_fair_group"]
    least_misery, name = True, "minhit"


@register_metric
class MinNDCG(_PairMetric):
    """MoRec ``min-ndcg@k``: minimum over fairness groups of the group's mean ndcg."""

    metric_need = _PairMetric.metric_need + ["morec.item_fair_group"]
    kind, least_misery, name = "ndcg", True, "minndcg"


@register_metric
class MinRHit(_PairMetric):
    """MoRec ``min-rhit@k``: minimum over fairness groups of the group's mean rhit."""

    metric_need = _PairMetric.metric_need + ["morec.item_weight", "morec.item_fair_group"]
    weighted, least_misery, name = True, True, "minrhit"


@register_metric
class MinRNDCG(_PairMetric):
    """MoRec ``min-rndcg@k``: minimum over fairness groups of the group's mean rndcg."""

    metric_need = _PairMetric.metric_need + ["morec.item_weight", "morec.item_fair_group"]
    kind, weighted, least_misery, name = "ndcg", True, True, "minrndcg"


def kl_expected_recommended(p_star, q):
    """UniRec's pop-kl: sum_g (p*_g + 1e-10) (ln(p*_g + 1e-10) - ln(q_g + 1e-10)) over groups 1..G."""
    p = np.asarray(p_star, dtype=float) + EPS
    q = np.asarray(q, dtype=float) + EPS
    return float(np.sum(p * (np.log(p) - np.log(q))))


def recommended_distribution(rec_items_k, item_align, n_groups, block_ids=None):
    """q over groups 0..G (index 0 = PAD slots) from top-k lists. ``block_ids`` given -> mean of the
    per-block distributions renormalised (UniRec's per-batch mean, M10); ``None`` -> pooled over all rows."""
    groups = item_align[rec_items_k.long()]  # [n_rows, k]
    if block_ids is None:
        counts = torch.bincount(groups.flatten(), minlength=n_groups + 1).double()
        return (counts / counts.sum()).numpy()
    _, block = torch.unique(block_ids, return_inverse=True)
    n_blocks = int(block.max()) + 1
    flat = block.unsqueeze(1).expand_as(groups) * (n_groups + 1) + groups
    counts = torch.bincount(flat.flatten(), minlength=n_blocks * (n_groups + 1)).double()
    counts = counts.view(n_blocks, n_groups + 1)
    q = (counts / counts.sum(dim=1, keepdim=True)).sum(dim=0)
    return (q / q.sum()).numpy()


@register_metric
class PopKL(AbstractMetric):
    """MoRec ``pop-kl@k``: KL(expected || recommended) over alignment groups (lower is better)."""

    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.items", "rec.users", "morec.item_align_group", "morec.align_expected", "morec.batch_start"]
    smaller = True

    def __init__(self, config):
        super().__init__(config)
        self.topk = topk_list(config)
        choices = check_choices(config, {"morec_popkl_aggregate": ("block", "batch", "global")}, "PopKL")
        self.aggregate = choices["morec_popkl_aggregate"]
        self.block_size = config["morec_popkl_block_size"]
        if self.aggregate == "block" and (isinstance(self.block_size, bool) or not isinstance(self.block_size, int)
                                          or self.block_size < 1):
            raise ConfigError(f"morec_popkl_block_size must be an int >= 1 (users per block), got {self.block_size!r}")

    def _block_ids(self, dataobject):
        if self.aggregate == "block":
            return user_blocks(dataobject.get("rec.users"), self.block_size)
        if self.aggregate == "batch":
            return dataobject.get("morec.batch_start")
        return None

    def calculate_metric(self, dataobject):
        rec_items = dataobject.get("rec.items")
        align = dataobject.get("morec.item_align_group")
        p_star = dataobject.get("morec.align_expected").numpy()
        n_groups = len(p_star) - 1
        blocks = self._block_ids(dataobject)
        result = {}
        for k in self.topk:
            q = recommended_distribution(rec_items[:, :k], align, n_groups, blocks)
            result[f"popkl@{k}"] = round(kl_expected_recommended(p_star[1:], q[1:]), self.decimal_place)
        return result
