"""Popularity-bias and fairness metrics (docs/fairness-metrics.md).

* Abdollahpouri et al. (FLAIRS 2019): ``aclt``, ``aplt``, ``arp`` (per user, averaged);
* Zhu, Wang, Caverlee (SIGIR 2020): ``rsp``, ``reo`` over the item groups, and ``poprsp`` / ``popreo``
  over short head vs long tail;
* Tsintzou, Pitoura, Tsaparas (RMSE@RecSys 2019): ``biasdisparitybs`` / ``biasdisparitybr`` /
  ``biasdisparitybd``, one key per (user group, item group);
* Deldjoo et al. (UMUAI 2021): ``usermadranking`` / ``itemmadranking`` and ``usermadrating`` /
  ``itemmadrating``.

Groups come from :mod:`recbole_ext.data.groups` (training split) through the ``fair.*`` collector keys.
The formula functions below take plain tensors so that they can be used (and tested) on their own.
"""

import torch
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType

from recbole_ext.data import groups as fair_groups
from recbole_ext.errors import ConfigError
from recbole_ext.evaluator.collector import register_batch_provider, register_data_provider
from recbole_ext.evaluator.register import register_metric, topk_list


# ------------------------------------------------------------------------------------------------
# collector inputs (training split, computed once per training set)
# ------------------------------------------------------------------------------------------------
@register_data_provider("fair.item_pop")
def _item_pop(dataset, config):
    return fair_groups.train_popularity(dataset)


@register_data_provider("fair.pop_group")
def _pop_group(dataset, config):
    return fair_groups.popularity_groups(dataset, config).ids


@register_data_provider("fair.item_group")
def _item_group(dataset, config):
    return fair_groups.item_groups(dataset, config).ids


@register_data_provider("fair.item_group_names")
def _item_group_names(dataset, config):
    return fair_groups.item_groups(dataset, config).names


@register_data_provider("fair.user_group")
def _user_group(dataset, config):
    return fair_groups.user_groups(dataset, config).ids


@register_data_provider("fair.user_group_names")
def _user_group_names(dataset, config):
    return fair_groups.user_groups(dataset, config).names


@register_data_provider("fair.train_keys")
def _train_keys(dataset, config):
    return fair_groups.train_keys(dataset)


@register_batch_provider("fair.topk_scores")
def _topk_scores(scores, interaction, positive_u, positive_i, collector):
    return torch.topk(scores, max(collector.topk), dim=-1).values.double().cpu()


# ------------------------------------------------------------------------------------------------
# formulas (tensors)
# ------------------------------------------------------------------------------------------------
def _depth(length):
    return torch.arange(1, length + 1, dtype=torch.float64)


def aclt_per_user(items, pop_group):
    """``[n, L]``: number of long-tail items (group 1) among the first 1..L items of every list."""
    return (pop_group[items] == 1).double().cumsum(dim=1)


def aplt_per_user(items, pop_group):
    """``[n, L]``: share of long-tail items among the first 1..L items of every list."""
    return aclt_per_user(items, pop_group) / _depth(items.shape[1])


def arp_per_user(items, popularity):
    """``[n, L]``: mean training popularity of the first 1..L items of every list."""
    return popularity.double()[items].cumsum(dim=1) / _depth(items.shape[1])


def group_counts(item_ids, item_group, n_groups):
    """``[n_groups]`` count of the given items (any shape) per group; items of group -1 are ignored."""
    g = item_group[item_ids.reshape(-1)]
    return torch.bincount(g[g >= 0], minlength=n_groups).double()


def train_group_counts(train_keys, n_items, row_users, item_group, n_groups):
    """``[n_groups]``: Σ over the rows of the number of the row user's training items in each group."""
    users, items = train_keys // n_items, train_keys % n_items
    g = item_group[items]
    keep = g >= 0
    n_users = int(torch.cat([users, row_users, torch.zeros(1, dtype=torch.long)]).max()) + 1
    per_user = torch.zeros(n_users, n_groups, dtype=torch.float64)
    per_user.index_put_((users[keep], g[keep]), torch.ones(int(keep.sum()), dtype=torch.float64), accumulate=True)
    return per_user[row_users].sum(dim=0)


def relative_std(p):
    """std / mean of the group probabilities (population std, as in Zhu et al.); NaN when the mean is 0."""
    p = p.double()
    mean = p.mean()
    return float(p.std(unbiased=False) / mean) if float(mean) > 0 else float("nan")


def rsp_probabilities(items, item_group, n_groups, n_rows, excluded):
    """P(R@k | g): recommended items of each group / (rows x group size − the rows' training items of the
    group); ``items`` ``[n, k]`` lists, ``excluded`` ``[n_groups]`` = :func:`train_group_counts`."""
    sizes = torch.bincount(item_group[item_group >= 0], minlength=n_groups).double()
    return group_counts(items, item_group, n_groups) / (n_rows * sizes - excluded)


def reo_probabilities(items, hits, positive_items, item_group, n_groups):
    """P(R@k | g, y=1): recommended test positives of each group / test positives of the group (positives
    that are training items excluded by the caller); ``hits`` ``[n, k]`` 0/1."""
    hit_items = items[hits.bool()]
    return group_counts(hit_items, item_group, n_groups) / group_counts(positive_items, item_group, n_groups)


def bias(user_group_of_pairs, item_group_of_pairs, item_group, n_user_groups, n_item_groups):
    """Tsintzou et al.'s bias B(G, C) = PR(G, C) / P(C) from (user group, item group) pairs:
    PR(G, C) = pairs of G in C / pairs of G; P(C) = |C| / items with a group. ``[n_user_groups, n_item_groups]``."""
    keep = (user_group_of_pairs >= 0) & (item_group_of_pairs >= 0)
    flat = user_group_of_pairs[keep] * n_item_groups + item_group_of_pairs[keep]
    counts = torch.bincount(flat, minlength=n_user_groups * n_item_groups).double().view(n_user_groups, n_item_groups)
    preference = counts / counts.sum(dim=1, keepdim=True)
    sizes = torch.bincount(item_group[item_group >= 0], minlength=n_item_groups).double()
    return preference / (sizes / sizes.sum())


def mad(values, groups, n_groups):
    """Mean over group pairs (a < b) of |mean_a − mean_b|, per column of ``values`` ``[n, K]``; ``groups``
    ``[n]`` (-1 = ignored). NaN when a group has no row."""
    keep = groups >= 0
    values, groups = values[keep].double(), groups[keep]
    sums = torch.zeros(n_groups, values.shape[1], dtype=torch.float64).index_add_(0, groups, values)
    counts = torch.bincount(groups, minlength=n_groups).double().unsqueeze(1)
    means = sums / counts  # NaN (0/0) for an empty group
    a, b = torch.triu_indices(n_groups, n_groups, offset=1)
    return (means[a] - means[b]).abs().mean(dim=0)


def item_utility(items, item_values, n_items):
    """Per item: mean of ``item_values`` ``[n, k]`` over the lists that recommend it, and how many do."""
    flat = items.reshape(-1)
    count = torch.bincount(flat, minlength=n_items).double()
    total = torch.zeros(n_items, dtype=torch.float64).index_add_(0, flat, item_values.reshape(-1).double())
    return total / count.clamp_min(1), count


# ------------------------------------------------------------------------------------------------
# metrics
# ------------------------------------------------------------------------------------------------
class _FairMetric(AbstractMetric):
    metric_type = EvaluatorType.RANKING
    smaller = False

    def __init__(self, config):
        super().__init__(config)
        self.config = config
        self.topk = topk_list(config)

    def _name(self):
        return type(self).__name__.lower()

    def _round(self, value):
        return round(float(value), self.decimal_place)


class _PerUserMetric(_FairMetric):
    """Mean over evaluated users of :meth:`per_user`."""

    def per_user(self, dataobject):
        raise NotImplementedError

    def calculate_metric(self, dataobject):
        values = self.per_user(dataobject).mean(dim=0)
        return {f"{self._name()}@{k}": self._round(values[k - 1]) for k in self.topk}


@register_metric
class ACLT(_PerUserMetric):
    """ACLT@k: mean number of long-tail items in the top-k list (Abdollahpouri et al. 2019)."""

    metric_need = ["rec.items", "fair.pop_group"]

    def per_user(self, dataobject):
        return aclt_per_user(dataobject.get("rec.items").long(), dataobject.get("fair.pop_group"))


@register_metric
class APLT(_PerUserMetric):
    """APLT@k: mean share of long-tail items in the top-k list (Abdollahpouri et al. 2019)."""

    metric_need = ["rec.items", "fair.pop_group"]

    def per_user(self, dataobject):
        return aplt_per_user(dataobject.get("rec.items").long(), dataobject.get("fair.pop_group"))


@register_metric
class ARP(_PerUserMetric):
    """ARP@k: mean over users of the mean training popularity (distinct users) of the top-k items."""

    metric_need = ["rec.items", "fair.item_pop"]
    smaller = True

    def per_user(self, dataobject):
        return arp_per_user(dataobject.get("rec.items").long(), dataobject.get("fair.item_pop"))


class _ParityMetric(_FairMetric):
    """RSP / REO (Zhu et al. 2020): std / mean of per-group probabilities; 0 = parity. Smaller is better."""

    smaller = True
    group_key = "fair.item_group"

    def groups(self, dataobject):
        ids = dataobject.get(self.group_key)
        if self.group_key == "fair.pop_group":
            return ids, len(fair_groups.POPULARITY_GROUP_NAMES)
        return ids, len(dataobject.get("fair.item_group_names"))

    def probabilities(self, dataobject, k, item_group, n_groups):
        raise NotImplementedError

    def calculate_metric(self, dataobject):
        item_group, n_groups = self.groups(dataobject)
        return {
            f"{self._name()}@{k}": self._round(relative_std(self.probabilities(dataobject, k, item_group, n_groups)))
            for k in self.topk
        }


class _RSPBase(_ParityMetric):
    def probabilities(self, dataobject, k, item_group, n_groups):
        items = dataobject.get("rec.items").long()
        users = dataobject.get("rec.users").long()
        excluded = train_group_counts(dataobject.get("fair.train_keys"), item_group.shape[0], users, item_group, n_groups)
        return rsp_probabilities(items[:, :k], item_group, n_groups, items.shape[0], excluded)


class _REOBase(_ParityMetric):
    def probabilities(self, dataobject, k, item_group, n_groups):
        items = dataobject.get("rec.items").long()
        users = dataobject.get("rec.users").long()
        hits = dataobject.get("rec.topk")[:, : items.shape[1]]
        pairs = dataobject.get("rec.positives").long()
        n_items = item_group.shape[0]
        keys = torch.unique(pairs[:, 0] * n_items + pairs[:, 1])  # (row, item) counted once
        rows, pos_items = keys // n_items, keys % n_items
        in_train = torch.isin(users[rows] * n_items + pos_items, dataobject.get("fair.train_keys"))
        return reo_probabilities(items[:, :k], hits[:, :k], pos_items[~in_train], item_group, n_groups)


_RSP_NEED = ["rec.items", "rec.users", "fair.train_keys"]
_REO_NEED = ["rec.items", "rec.users", "rec.topk", "rec.positives", "fair.train_keys"]


@register_metric
class RSP(_RSPBase):
    """Ranking-based statistical parity over the item groups (``item_group_field``; ~ = short head / long tail)."""

    metric_need = _RSP_NEED + ["fair.item_group", "fair.item_group_names"]


@register_metric
class REO(_REOBase):
    """Ranking-based equal opportunity over the item groups (``item_group_field``; ~ = short head / long tail)."""

    metric_need = _REO_NEED + ["fair.item_group", "fair.item_group_names"]


@register_metric
class PopRSP(_RSPBase):
    """RSP over short head vs long tail."""

    metric_need = _RSP_NEED + ["fair.pop_group"]
    group_key = "fair.pop_group"


@register_metric
class PopREO(_REOBase):
    """REO over short head vs long tail."""

    metric_need = _REO_NEED + ["fair.pop_group"]
    group_key = "fair.pop_group"


class _BiasDisparity(_FairMetric):
    """Tsintzou et al. (2019): one value per (user group, item group), keys ``<name>_<ugroup>_<igroup>@k``."""

    metric_need = ["rec.items", "rec.users", "fair.user_group", "fair.user_group_names", "fair.item_group",
                   "fair.item_group_names", "fair.train_keys"]

    def source_bias(self, dataobject):
        item_group, user_group = dataobject.get("fair.item_group"), dataobject.get("fair.user_group")
        keys = dataobject.get("fair.train_keys")
        n_items = item_group.shape[0]
        return bias(user_group[keys // n_items], item_group[keys % n_items], item_group,
                    len(dataobject.get("fair.user_group_names")), len(dataobject.get("fair.item_group_names")))

    def recommendation_bias(self, dataobject, k):
        items = dataobject.get("rec.items").long()[:, :k]
        users = dataobject.get("rec.users").long()
        item_group, user_group = dataobject.get("fair.item_group"), dataobject.get("fair.user_group")
        pair_users = users.unsqueeze(1).expand_as(items).reshape(-1)
        return bias(user_group[pair_users], item_group[items.reshape(-1)], item_group,
                    len(dataobject.get("fair.user_group_names")), len(dataobject.get("fair.item_group_names")))

    def value(self, dataobject, k):
        raise NotImplementedError

    def calculate_metric(self, dataobject):
        unames, inames = dataobject.get("fair.user_group_names"), dataobject.get("fair.item_group_names")
        result = {}
        for k in self.topk:
            table = self.value(dataobject, k)
            for u, uname in enumerate(unames):
                for i, iname in enumerate(inames):
                    result[f"{self._name()}_{uname}_{iname}@{k}"] = self._round(table[u, i])
        return result


@register_metric
class BiasDisparityBS(_BiasDisparity):
    """B_S(G, C): bias of user group G towards item group C in the training data (same value at every k)."""

    def value(self, dataobject, k):
        return self.source_bias(dataobject)


@register_metric
class BiasDisparityBR(_BiasDisparity):
    """B_R(G, C): the same bias in the top-k recommendations of the evaluated users."""

    def value(self, dataobject, k):
        return self.recommendation_bias(dataobject, k)


@register_metric
class BiasDisparityBD(_BiasDisparity):
    """Bias disparity (B_R − B_S) / B_S per (user group, item group)."""

    def value(self, dataobject, k):
        bs = self.source_bias(dataobject)
        return (self.recommendation_bias(dataobject, k) - bs) / bs


def _check_no_rerank(config, name):
    rerank = config["rerank"] if "rerank" in config else None
    if rerank is not None and str(rerank).lower() not in ("", "none", "false"):
        raise ConfigError(
            f"{name}: with rerank: {rerank} the scores are rank-derived (L..1), not the model's predictions, so a "
            f"mean predicted score is meaningless; use usermadranking / itemmadranking, or set rerank: ~"
        )


@register_metric
class UserMADranking(_FairMetric):
    """Mean absolute difference, over user-group pairs, of the groups' mean per-user ``fair_mad_metric``."""

    metric_need = ["rec.items", "rec.topk", "rec.users", "fair.user_group", "fair.user_group_names"]
    smaller = True

    def __init__(self, config):
        super().__init__(config)
        self.metric = str(config["fair_mad_metric"]).lower()

    def user_values(self, dataobject):
        from recbole_ext.evaluator.metrics.calibration import per_user_metric

        return per_user_metric(self.metric, self.config, dataobject, key="fair_mad_metric")

    def calculate_metric(self, dataobject):
        users = dataobject.get("rec.users").long()
        groups = dataobject.get("fair.user_group")[users]
        values = mad(self.user_values(dataobject), groups, len(dataobject.get("fair.user_group_names")))
        return {f"{self._name()}@{k}": self._round(values[k - 1]) for k in self.topk}


@register_metric
class UserMADrating(UserMADranking):
    """UserMADranking with the per-user mean predicted score of the top-k items (no re-ranker)."""

    metric_need = ["rec.items", "rec.users", "fair.user_group", "fair.user_group_names", "fair.topk_scores"]

    def __init__(self, config):
        _FairMetric.__init__(self, config)
        _check_no_rerank(config, "usermadrating")

    def user_values(self, dataobject):
        _check_no_rerank(self.config, "usermadrating")
        scores = dataobject.get("fair.topk_scores")
        return scores.cumsum(dim=1) / _depth(scores.shape[1])


@register_metric
class ItemMADranking(_FairMetric):
    """Mean absolute difference, over item-group pairs, of the groups' mean per-item utility: an item's
    utility is its hit rate among the top-k lists that recommend it (items never recommended are left out)."""

    metric_need = ["rec.items", "rec.topk", "fair.item_group", "fair.item_group_names"]
    smaller = True

    def item_values(self, dataobject, k):
        return dataobject.get("rec.topk")[:, :k]

    def calculate_metric(self, dataobject):
        item_group = dataobject.get("fair.item_group")
        n_groups = len(dataobject.get("fair.item_group_names"))
        items = dataobject.get("rec.items").long()
        result = {}
        for k in self.topk:
            utility, count = item_utility(items[:, :k], self.item_values(dataobject, k), item_group.shape[0])
            groups = torch.where(count > 0, item_group, torch.full_like(item_group, -1))
            result[f"{self._name()}@{k}"] = self._round(mad(utility.unsqueeze(1), groups, n_groups)[0])
        return result


@register_metric
class ItemMADrating(ItemMADranking):
    """ItemMADranking with the per-item mean predicted score over the lists that recommend it (no re-ranker)."""

    metric_need = ["rec.items", "fair.item_group", "fair.item_group_names", "fair.topk_scores"]

    def __init__(self, config):
        super().__init__(config)
        _check_no_rerank(config, "itemmadrating")

    def item_values(self, dataobject, k):
        _check_no_rerank(self.config, "itemmadrating")
        return dataobject.get("fair.topk_scores")[:, :k]
