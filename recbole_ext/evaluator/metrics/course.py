"""The PoliMi course framework's accuracy and beyond-accuracy metrics (``Evaluation/metrics.py``) as
RecBole metric plugins. Spec: ``shared/specs/gfcf-and-course-metrics.md`` §7.

Names are distinct from RecBole's wherever the definitions differ (RecBole's ``map``, ``giniindex``,
``shannonentropy``, ``averagepopularity``, ``itemcoverage`` keep their own meaning). Conventions:

* U_eval = the rows RecBole evaluates (users with >= 1 test interaction), lists L_u = RecBole's top-k
  (history masked); |L_u| = k;
* the [PAD] item / user (internal id 0) is RecBole's and is treated as the course's *ignored* item /
  user: it is removed from every item count vector and from the item / user totals;
* pop_i = number of distinct training users of item i (column nnz of the train URM);
* every metric is computed for each k of ``topk`` and reported as ``<name>@<k>``.
"""

import numpy as np
import torch
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType

from recbole_ext.evaluator.collector import register_data_provider
from recbole_ext.evaluator.register import register_metric


# ----------------------------------------------------------------------------------------------
# training-set statistics (computed once per training set by ExtCollector)
# ----------------------------------------------------------------------------------------------
def _train_binary(dataset):
    X = dataset.inter_matrix(form="csr").astype(np.float64)
    X.sum_duplicates()
    X.data[:] = 1.0
    return X


@register_data_provider("course.item_pop")
def _item_pop(dataset, config):
    """pop_i: training users per item (index 0 = PAD, always 0)."""
    return torch.from_numpy(np.asarray(_train_binary(dataset).sum(axis=0)).ravel())


@register_data_provider("course.train_avgpop")
def _train_avgpop(dataset, config):
    """AVERAGE_POPULARITY of every user's full training profile (all users, empty profiles count 0)."""
    X = _train_binary(dataset)
    pop = np.asarray(X.sum(axis=0)).ravel()
    q = pop / pop.max() if pop.max() > 0 else pop
    lengths = np.diff(X.indptr)[1:]
    sums = (X @ q)[1:]
    per_user = np.divide(sums, lengths, out=np.zeros_like(sums), where=lengths > 0)
    return torch.tensor(float(per_user.mean()) if per_user.size else 0.0, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# formulas (numpy; also used directly by the tests)
# ----------------------------------------------------------------------------------------------
def self_information(pop):
    """-log2(pop_i / N) for pop_i > 0, else 0 (N = total training interactions)."""
    pop = np.asarray(pop, dtype=np.float64)
    total = pop.sum()
    out = np.zeros_like(pop)
    mask = pop > 0
    out[mask] = -np.log2(pop[mask] / total)
    return out


def herfindahl(counts):
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return float("nan")
    return float(1.0 - np.sum((counts / total) ** 2))


def gini_diversity(counts):
    """2 Σ_j (n+1-j)/(n+1) c_(j) / Σc over all n items sorted ascending (zeros included)."""
    c = np.sort(np.asarray(counts, dtype=np.float64))
    n = c.size
    total = c.sum()
    if total == 0 or n == 0:
        return float("nan")
    j = np.arange(1, n + 1)
    return float(2.0 * np.sum((n + 1 - j) / (n + 1) * c) / total)


def shannon_bits(counts):
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    if c.size == 0:
        return 0.0
    p = c / c.sum()
    return float(-np.sum(p * np.log2(p)))


def mean_inter_list(counts, n_users, k):
    """1 - [(Σc² - U k)/k] / (U² - U); 1.0 when fewer than two users are evaluated (no pair)."""
    if n_users <= 1:
        return 1.0
    c = np.asarray(counts, dtype=np.float64)
    return float(1.0 - ((np.sum(c**2) - n_users * k) / k) / (n_users**2 - n_users))


# ----------------------------------------------------------------------------------------------
# base classes
# ----------------------------------------------------------------------------------------------
class _CourseMetric(AbstractMetric):
    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.items"]
    smaller = False

    def __init__(self, config):
        super().__init__(config)
        self.topk = config["topk"]

    def calculate_metric(self, dataobject):
        name = type(self).__name__.lower()
        return {f"{name}@{k}": round(float(self.value(dataobject, k)), self.decimal_place) for k in self.topk}

    def value(self, dataobject, k):  # pragma: no cover - abstract
        raise NotImplementedError

    # helpers --------------------------------------------------------------------------------
    @staticmethod
    def items(dataobject, k):
        return dataobject.get("rec.items")[:, :k].numpy().astype(np.int64)

    def hits(self, dataobject, k):
        """(hit matrix [U, k] of bools, |T_u| per user)."""
        rec = dataobject.get("rec.topk")
        topk_idx, pos_len = torch.split(rec, [max(self.topk), 1], dim=1)
        return topk_idx[:, :k].to(torch.bool).numpy(), pos_len.squeeze(-1).numpy().astype(np.float64)

    @staticmethod
    def counts(dataobject, k):
        """c_i over all non-PAD items (length n_items - 1)."""
        num_items = int(dataobject.get("data.num_items"))
        items = _CourseMetric.items(dataobject, k)
        return np.bincount(items.ravel(), minlength=num_items)[1:num_items]

    @staticmethod
    def n_real_items(dataobject):
        return int(dataobject.get("data.num_items")) - 1

    @staticmethod
    def n_real_users(dataobject):
        return int(dataobject.get("data.num_users")) - 1


class _CountMetric(_CourseMetric):
    metric_need = ["rec.items", "data.num_items"]


# ----------------------------------------------------------------------------------------------
# accuracy
# ----------------------------------------------------------------------------------------------
@register_metric
class Precision_MinDen(_CourseMetric):
    """PRECISION_RECALL_MIN_DEN: hits / min(|T_u|, |L_u|), averaged over users."""

    metric_need = ["rec.topk"]

    def value(self, dataobject, k):
        hits, pos_len = self.hits(dataobject, k)
        return np.mean(hits.sum(axis=1) / np.minimum(pos_len, k)) if len(hits) else 0.0


@register_metric
class MAP_ListLen(_CourseMetric):
    """Course MAP: AP_u = Σ_j h_u(j)·Prec@j / |L_u| (list-length denominator, G8).

    RecBole's ``map`` divides by min(|T_u|, k) instead (= the course's MAP_MIN_DEN)."""

    metric_need = ["rec.topk"]

    def value(self, dataobject, k):
        hits, _ = self.hits(dataobject, k)
        if not len(hits):
            return 0.0
        prec_at_j = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
        return np.mean((hits * prec_at_j).sum(axis=1) / k)


@register_metric
class ARHR(_CourseMetric):
    """ARHR_ALL_HITS: Σ over every hit position j of 1/j (can exceed 1), averaged over users."""

    metric_need = ["rec.topk"]

    def value(self, dataobject, k):
        hits, _ = self.hits(dataobject, k)
        return np.mean((hits / np.arange(1, k + 1)).sum(axis=1)) if len(hits) else 0.0


@register_metric
class F1(_CourseMetric):
    """F1 from the *averaged* precision (hits/k) and recall (hits/|T_u|): 2PR/(P+R)."""

    metric_need = ["rec.topk"]

    def value(self, dataobject, k):
        hits, pos_len = self.hits(dataobject, k)
        if not len(hits):
            return 0.0
        n_hits = hits.sum(axis=1)
        precision = np.mean(n_hits / k)
        recall = np.mean(n_hits / pos_len)
        return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


# ----------------------------------------------------------------------------------------------
# novelty and popularity
# ----------------------------------------------------------------------------------------------
@register_metric
class Novelty(_CourseMetric):
    """NOVELTY: per user Σ_{i∈L_u, pop_i>0} -log2(pop_i/N) / n_items, averaged over users."""

    metric_need = ["rec.items", "course.item_pop"]

    def value(self, dataobject, k):
        pop = dataobject.get("course.item_pop").numpy()
        info = self_information(pop[1:])
        info = np.concatenate([[0.0], info])
        items = self.items(dataobject, k)
        if not len(items):
            return 0.0
        return info[items].sum() / (pop.size - 1) / items.shape[0]


def train_novelty(pop, n_users):
    """NOVELTY of every user's training profile taken as its list (denominator of RATIO_NOVELTY)."""
    pop = np.asarray(pop, dtype=np.float64)
    return float(np.sum(pop * self_information(pop)) / pop.size / n_users)


@register_metric
class NormAveragePopularity(_CourseMetric):
    """AVERAGE_POPULARITY (course): mean over L_u of pop_i / max_j pop_j, averaged over users.

    RecBole's ``averagepopularity`` averages raw training counts instead."""

    metric_need = ["rec.items", "course.item_pop"]

    def value(self, dataobject, k):
        pop = dataobject.get("course.item_pop").numpy().astype(np.float64)
        q = pop / pop.max() if pop.max() > 0 else pop
        items = self.items(dataobject, k)
        return float(q[items].mean()) if items.size else 0.0


# ----------------------------------------------------------------------------------------------
# diversity and coverage of the global recommendation distribution
# ----------------------------------------------------------------------------------------------
@register_metric
class Diversity_MeanInterList(_CountMetric):
    """DIVERSITY_MEAN_INTER_LIST: mean over user pairs of 1 - |L_u ∩ L_v| / k (from the counts c)."""

    def value(self, dataobject, k):
        return mean_inter_list(self.counts(dataobject, k), self.items(dataobject, k).shape[0], k)


@register_metric
class Diversity_Herfindahl(_CountMetric):
    """DIVERSITY_HERFINDAHL: 1 - Σ_i (c_i / Σc)²."""

    def value(self, dataobject, k):
        return herfindahl(self.counts(dataobject, k))


@register_metric
class Diversity_Gini(_CountMetric):
    """DIVERSITY_GINI (high = diverse) = 1 - G·n/(n+1) with G RecBole-style Gini index over n items."""

    def value(self, dataobject, k):
        return gini_diversity(self.counts(dataobject, k))


@register_metric
class ShannonEntropy_Bits(_CountMetric):
    """SHANNON_ENTROPY: -Σ p_i log2 p_i, p_i = c_i / Σc (bits; no division by distinct items)."""

    def value(self, dataobject, k):
        return shannon_bits(self.counts(dataobject, k))


@register_metric
class Coverage_Item(_CountMetric):
    """COVERAGE_ITEM: recommended items / all items (PAD excluded)."""

    def value(self, dataobject, k):
        return np.count_nonzero(self.counts(dataobject, k)) / self.n_real_items(dataobject)


@register_metric
class Coverage_ItemHit(_CourseMetric):
    """COVERAGE_ITEM_HIT: items that were a hit for >= 1 user / all items."""

    metric_need = ["rec.items", "rec.topk", "data.num_items"]

    def value(self, dataobject, k):
        hits, _ = self.hits(dataobject, k)
        items = self.items(dataobject, k)
        return np.unique(items[hits]).size / self.n_real_items(dataobject)


@register_metric
class Coverage_User(_CourseMetric):
    """COVERAGE_USER: users with a non-empty list / *all* users (users without test data count as
    not covered)."""

    metric_need = ["rec.items", "data.num_users"]

    def value(self, dataobject, k):
        items = self.items(dataobject, k)
        return np.count_nonzero((items > 0).any(axis=1)) / self.n_real_users(dataobject)


@register_metric
class Coverage_UserHit(_CourseMetric):
    """COVERAGE_USER_HIT: users with >= 1 hit / all users (= HIT_RATE × COVERAGE_USER)."""

    metric_need = ["rec.topk", "data.num_users"]

    def value(self, dataobject, k):
        hits, _ = self.hits(dataobject, k)
        return np.count_nonzero(hits.any(axis=1)) / self.n_real_users(dataobject)


@register_metric
class Users_In_GT(_CourseMetric):
    """USERS_IN_GT: users with >= 1 test interaction / all users."""

    metric_need = ["rec.topk", "data.num_users"]

    def value(self, dataobject, k):
        _, pos_len = self.hits(dataobject, k)
        return np.count_nonzero(pos_len > 0) / self.n_real_users(dataobject)


@register_metric
class Items_In_GT(_CourseMetric):
    """ITEMS_IN_GT: items with >= 1 test interaction / all items."""

    metric_need = ["rec.positives", "data.num_items"]

    def value(self, dataobject, k):
        positives = dataobject.get("rec.positives").numpy()
        return np.unique(positives[:, 1]).size / self.n_real_items(dataobject)


# ----------------------------------------------------------------------------------------------
# RATIO_* : metric of the recommendations / the same metric on the training data
# ----------------------------------------------------------------------------------------------
class _RatioCount(_CourseMetric):
    metric_need = ["rec.items", "data.num_items", "course.item_pop"]
    formula = None

    def value(self, dataobject, k):
        pop = dataobject.get("course.item_pop").numpy()[1:]
        return type(self).formula(self.counts(dataobject, k)) / type(self).formula(pop)


@register_metric
class Ratio_ShannonEntropy(_RatioCount):
    """RATIO_SHANNON_ENTROPY: SHANNON_ENTROPY(c) / SHANNON_ENTROPY(pop)."""

    formula = staticmethod(shannon_bits)


@register_metric
class Ratio_Diversity_Herfindahl(_RatioCount):
    """RATIO_DIVERSITY_HERFINDAHL: HERFINDAHL(c) / HERFINDAHL(pop)."""

    formula = staticmethod(herfindahl)


@register_metric
class Ratio_Diversity_Gini(_RatioCount):
    """RATIO_DIVERSITY_GINI: GINI_DIVERSITY(c) / GINI_DIVERSITY(pop)."""

    formula = staticmethod(gini_diversity)


@register_metric
class Ratio_Novelty(_CourseMetric):
    """RATIO_NOVELTY: NOVELTY / NOVELTY of all users' full training profiles."""

    metric_need = ["rec.items", "course.item_pop", "data.num_users"]

    def value(self, dataobject, k):
        novelty = Novelty.value(self, dataobject, k)
        pop = dataobject.get("course.item_pop").numpy()[1:]
        return novelty / train_novelty(pop, self.n_real_users(dataobject))


@register_metric
class Ratio_AveragePopularity(_CourseMetric):
    """RATIO_AVERAGE_POPULARITY: AVERAGE_POPULARITY / the same over all users' training profiles."""

    metric_need = ["rec.items", "course.item_pop", "course.train_avgpop"]

    def value(self, dataobject, k):
        return NormAveragePopularity.value(self, dataobject, k) / float(dataobject.get("course.train_avgpop"))
