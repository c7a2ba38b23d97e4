"""Calibration metrics (CaliTune spec §9): ``jsd@k``, Steck's miscalibration ``miscalkl@k`` and
user-group breakdowns (``usergroup``: Mainstream / Diverse / Niche) of any top-k metric.

All of them use the popularity bins and user targets of :mod:`recbole_ext.data.popularity`,
computed once from the training split (``calib.*`` collector keys).
"""

import numpy as np
import torch
from recbole.evaluator.base_metric import AbstractMetric
from recbole.utils import EvaluatorType

from recbole_ext.data.popularity import USER_GROUP_NAMES, calibration_data
from recbole_ext.errors import ConfigError
from recbole_ext.evaluator.collector import register_data_provider
from recbole_ext.evaluator.register import register_metric, topk_list

EPS = 1e-10


@register_data_provider("calib.item_group")
def _item_group(dataset, config):
    return calibration_data(dataset, config).item_group


@register_data_provider("calib.user_target")
def _user_target(dataset, config):
    return calibration_data(dataset, config).user_target


@register_data_provider("calib.user_group")
def _user_group(dataset, config):
    return calibration_data(dataset, config).user_group


# ------------------------------------------------------------------------------------------------
# per-user functions (tensors; usable outside RecBole's evaluator)
# ------------------------------------------------------------------------------------------------
def list_group_shares(items, item_group, n_groups=3):
    """``[n, L, G]`` shares of each group among the first 1..L items of every list (counts / depth)."""
    groups = item_group[items]  # [n, L]
    onehot = torch.zeros(*groups.shape, n_groups, dtype=torch.float64)
    valid = groups >= 0
    onehot[valid] = torch.nn.functional.one_hot(groups[valid], n_groups).double()
    depth = torch.arange(1, items.shape[1] + 1, dtype=torch.float64).view(1, -1, 1)
    return onehot.cumsum(dim=1) / depth


def jsd(p, q):
    """Base-2 Jensen–Shannon divergence of the evaluation (spec §9.2): ε = 1e-10 added to both
    vectors, **no** renormalisation. Broadcasts over leading dimensions; last dim = groups."""
    p = p.double() + EPS
    q = q.double() + EPS
    m = 0.5 * (p + q)
    return 0.5 * (q * torch.log2(q / m)).sum(-1) + 0.5 * (p * torch.log2(p / m)).sum(-1)


def miscalibration_kl(p, q, alpha=0.01):
    """Steck (2018) miscalibration: KL(p ‖ q̃), q̃ = (1 − α) q + α p, natural log; 0·log 0 = 0."""
    p = p.double()
    q_tilde = (1.0 - alpha) * q.double() + alpha * p
    terms = torch.where(p > 0, p * torch.log(p / q_tilde.clamp_min(EPS)), torch.zeros_like(p))
    return terms.sum(-1)


def per_user_jsd(items, users, item_group, user_target):
    """``[n, L]``: JSD@1..L of every list against its user's target."""
    shares = list_group_shares(items, item_group)
    return jsd(user_target[users].unsqueeze(1), shares)


class _CalibrationMetric(AbstractMetric):
    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.items", "rec.users", "calib.item_group", "calib.user_target"]
    smaller = True

    def __init__(self, config):
        super().__init__(config)
        self.topk = topk_list(config)

    def per_user(self, dataobject):
        raise NotImplementedError

    def calculate_metric(self, dataobject):
        values = self.per_user(dataobject).mean(dim=0).numpy()
        name = type(self).__name__.lower()
        return {f"{name}@{k}": round(float(values[k - 1]), self.decimal_place) for k in self.topk}


@register_metric
class JSD(_CalibrationMetric):
    """JSD@k: base-2 Jensen–Shannon divergence between the user's training popularity-group
    distribution P_u and the group shares of the top-k list (CaliTune spec §9.2). Smaller is better."""

    def per_user(self, dataobject):
        return per_user_jsd(
            dataobject.get("rec.items").long(),
            dataobject.get("rec.users").long(),
            dataobject.get("calib.item_group"),
            dataobject.get("calib.user_target"),
        )


@register_metric
class MisCalKL(_CalibrationMetric):
    """Steck's miscalibration C_KL@k = KL(P_u ‖ (1 − α) Q + α P_u) over popularity groups
    (Steck, "Calibrated Recommendations", RecSys 2018; unweighted list shares; α: ``miscal_alpha``)."""

    def __init__(self, config):
        super().__init__(config)
        self.alpha = float(config["miscal_alpha"])
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"miscal_alpha must lie in [0, 1], got {self.alpha}")

    def per_user(self, dataobject):
        items = dataobject.get("rec.items").long()
        users = dataobject.get("rec.users").long()
        shares = list_group_shares(items, dataobject.get("calib.item_group"))
        return miscalibration_kl(dataobject.get("calib.user_target")[users].unsqueeze(1), shares, self.alpha)


def per_user_metric(name, config, dataobject, key="usergroup_metrics"):
    """``[n, maxk]`` per-user values of a top-k metric: any metric class with a ``per_user`` method (jsd,
    miscalkl, aclt, aplt, arp, ...) or one of RecBole's top-k metrics. ``key``: the config key that named it."""
    from recbole.evaluator.base_metric import TopkMetric
    from recbole.evaluator.register import metric_information, metrics_dict

    name = name.lower()
    cls = metrics_dict.get(name)
    if cls is None:
        raise ConfigError(f"{key}: unknown metric '{name}'")
    missing = [need for need in metric_information.get(name, []) if need not in dataobject]
    if missing:
        raise ConfigError(
            f"{key}: '{name}' needs the evaluation input(s) {missing}, which the collector gathers only for "
            f"metrics listed in 'metrics': add '{name}' to metrics"
        )
    metric = cls(config)
    if callable(getattr(metric, "per_user", None)):
        return metric.per_user(dataobject).double()
    if not isinstance(metric, TopkMetric):
        raise ConfigError(
            f"{key}: '{name}' is not a top-k metric; only top-k metrics (ndcg, recall, hit, mrr, "
            "precision, map) and metrics with per-user values (jsd, miscalkl, aclt, aplt, arp) can be used here"
        )
    pos_index, pos_len = metric.used_info(dataobject)
    try:
        values = metric.metric_info(pos_index, pos_len)
    except TypeError:
        values = metric.metric_info(pos_index)
    return torch.from_numpy(np.asarray(values, dtype=np.float64))


def usergroup_groups(dataset, config):
    """The user groups of the ``usergroup`` metric: ``usergroup_source`` calitune (Mainstream / Diverse /
    Niche), activity (active / inactive, ``user_activity_share``) or a single-token .user column."""
    from recbole_ext.data.groups import Groups, user_groups_from

    source = config["usergroup_source"]
    if source is None or str(source).lower() == "calitune":
        return Groups(calibration_data(dataset, config).user_group, USER_GROUP_NAMES)
    return user_groups_from(dataset, config, source, "usergroup_source")


@register_data_provider("usergroup.user_group")
def _usergroup_ids(dataset, config):
    return usergroup_groups(dataset, config).ids


@register_data_provider("usergroup.user_group_names")
def _usergroup_names(dataset, config):
    return usergroup_groups(dataset, config).names


@register_metric
class UserGroup(AbstractMetric):
    """Means of top-k metrics within user groups. Keys ``<metric>_<group>@k``; metrics from ``usergroup_metrics``
    (``properties/overall.yaml``: [ndcg, jsd]); groups from ``usergroup_source``: calitune (default) =
    Mainstream / Diverse / Niche (20/60/20 of users by HighPop share, CaliTune spec §9.3), activity, or a
    single-token .user column (docs/fairness-metrics.md)."""

    metric_type = EvaluatorType.RANKING
    metric_need = ["rec.topk", "rec.items", "rec.users", "calib.item_group", "calib.user_target", "calib.user_group",
                   "usergroup.user_group", "usergroup.user_group_names"]

    def __init__(self, config):
        super().__init__(config)
        self.config = config
        self.topk = topk_list(config)
        self.names = [str(n).lower() for n in config["usergroup_metrics"]]

    def calculate_metric(self, dataobject):
        users = dataobject.get("rec.users").long()
        if "usergroup.user_group" in dataobject:
            groups = dataobject.get("usergroup.user_group")[users]
            group_names = dataobject.get("usergroup.user_group_names")
        else:  # a struct built by hand with the CaliTune groups only
            groups = dataobject.get("calib.user_group")[users]
            group_names = USER_GROUP_NAMES
        result = {}
        for name in self.names:
            values = per_user_metric(name, self.config, dataobject)
            for g, gname in enumerate(group_names):
                mask = groups == g
                mean = values[mask].mean(dim=0) if bool(mask.any()) else torch.full((values.shape[1],), float("nan"))
                for k in self.topk:
                    result[f"{name}_{gname}@{k}"] = round(float(mean[k - 1]), self.decimal_place)
        return result
