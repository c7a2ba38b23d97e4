"""Item and user groups of the popularity-bias and fairness metrics (docs/fairness-metrics.md).

Every function returns, per internal id, a group number ``0 .. G-1`` (``-1`` for the PAD row and for
rows without a group) and the group names, in a :class:`Groups`. All are computed on the **training**
split and cached on the dataset object (one entry per configuration that matters).

* **Popularity groups** (:func:`popularity_groups`) — short head (0) vs long tail (1). Items are
  sorted by training popularity (distinct training users), descending, ties by ascending internal id.
  ``fair_short_head_by: interactions`` (default): the short head is the smallest prefix of that order
  whose items together hold at least ``fair_short_head_share`` of all training interactions (the item
  that crosses the threshold is in the head). ``fair_short_head_by: items``: the short head is the first
  ``ceil(fair_short_head_share * n_items)`` items of the order.
* **Item groups** (:func:`item_groups`) — the popularity groups, or the values of a single-token
  ``.item`` column named by ``item_group_field``.
* **User groups** (:func:`user_groups`) — ``user_group_field`` ~ : activity groups, ``active`` (0) =
  the ``round(user_activity_share * n_users)`` users with the most training interactions (ties by
  ascending internal id), ``inactive`` (1) = the others; or the values of a single-token ``.user`` column.
"""

import math
import re
from typing import NamedTuple

import numpy as np
import torch

from recbole_ext import options
from recbole_ext.errors import ConfigError, DatasetError

POPULARITY_GROUP_NAMES = ("shorthead", "longtail")
ACTIVITY_GROUP_NAMES = ("active", "inactive")


class Groups(NamedTuple):
    """``ids``: LongTensor, group per internal id (-1 = none); ``names``: one name per group."""

    ids: torch.Tensor
    names: tuple


def _share(config, key):
    try:
        value = float(config[key])
    except (TypeError, ValueError, KeyError):
        raise ConfigError(f"{key} must be a number in (0, 1), got {_get(config, key)!r}") from None
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{key} must lie strictly between 0 and 1 (e.g. 0.8), got {value}")
    return value


def _get(config, key):
    try:
        return config[key]
    except KeyError:
        return None


def group_name(token):
    """A group name usable inside a metric key: lower case, runs of other characters than [a-z0-9] -> '-'."""
    name = re.sub(r"[^a-z0-9]+", "-", str(token).lower()).strip("-")
    return name or "empty"


# ------------------------------------------------------------------------------------------------
# pure functions (numpy; used by the tests)
# ------------------------------------------------------------------------------------------------
def short_head_groups(popularity, share, by="interactions"):
    """0 short head / 1 long tail / -1 PAD per item from a popularity vector (index 0 = PAD).

    ``by="interactions"``: the head is the shortest popularity-ordered prefix holding >= ``share`` of the
    total popularity; ``by="items"``: the first ``ceil(share * n)`` items of that order.
    """
    pop = np.asarray(popularity, dtype=np.float64)
    groups = np.full(pop.shape[0], -1, dtype=np.int64)
    real = pop[1:]
    if real.size == 0:
        raise DatasetError("cannot build short head / long tail groups: the dataset has no items")
    order = np.argsort(-real, kind="stable")  # descending, ties by ascending id
    if by == "items":
        n_head = int(math.ceil(share * real.size - 1e-9))
    else:
        cumulative = np.cumsum(real[order])
        total = cumulative[-1]
        if total <= 0:
            raise DatasetError("cannot build short head / long tail groups: the training split has no interactions")
        n_head = int(np.argmax(cumulative >= share * total - 1e-9 * total)) + 1
    ranked = np.ones(real.size, dtype=np.int64)
    ranked[:n_head] = 0
    groups[1 + order] = ranked
    return groups


def activity_groups(activity, share):
    """0 active / 1 inactive / -1 PAD per user from training interaction counts (index 0 = PAD):
    the ``round(share * n)`` most active users (ties by ascending id) are active."""
    act = np.asarray(activity, dtype=np.float64)
    groups = np.full(act.shape[0], -1, dtype=np.int64)
    real = act[1:]
    order = np.argsort(-real, kind="stable")
    n_active = int(round(share * real.size))
    ranked = np.ones(real.size, dtype=np.int64)
    ranked[:n_active] = 0
    groups[1 + order] = ranked
    return groups


def value_groups(values, tokens=None):
    """Groups from a token column (ids, index 0 = PAD row, value 0 = [PAD] / missing -> -1).

    Groups are the distinct non-zero values present on real rows, numbered in ascending id order;
    names from ``tokens`` (id -> original token) when given, else the ids themselves."""
    values = np.asarray(values, dtype=np.int64)
    groups = np.full(values.shape[0], -1, dtype=np.int64)
    real = values[1:]
    present = np.unique(real[real > 0])
    mapped = np.searchsorted(present, real)
    groups[1:] = np.where(real > 0, mapped, -1)
    names = tuple(group_name(tokens[v] if tokens is not None else v) for v in present)
    if len(set(names)) != len(names):  # two tokens collapse to one key: keep them apart by id
        names = tuple(f"{n}-{int(v)}" for n, v in zip(names, present))
    return groups, names


def check_groups(groups, names, key, what):
    """Refuse fewer than two groups or a group without any member."""
    groups = np.asarray(groups)
    counts = np.bincount(groups[groups >= 0], minlength=len(names))
    if len(names) < 2:
        raise DatasetError(f"{key}: the {what} form {len(names)} group(s) {list(names)}; the fairness metrics "
                           "compare groups and need at least two: choose another field or share")
    empty = [names[g] for g in np.nonzero(counts == 0)[0]]
    if empty:
        raise DatasetError(f"{key}: the {what} group(s) {empty} have no member; choose another share or field")


# ------------------------------------------------------------------------------------------------
# dataset-level (cached)
# ------------------------------------------------------------------------------------------------
def _cached(dataset, key, build):
    cache = dataset.__dict__.setdefault("_recbole_ext_fair_groups", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _train_binary(dataset):
    matrix = dataset.inter_matrix(form="csr").astype(np.float64)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def train_popularity(dataset):
    """Distinct training users per internal item id (PAD = 0), float64 tensor."""

    def build():
        pop = np.asarray(_train_binary(dataset).sum(axis=0)).ravel()
        pop[0] = 0.0
        return torch.from_numpy(pop.astype(np.float64))

    return _cached(dataset, ("pop",), build)


def train_keys(dataset):
    """Sorted distinct ``user * n_items + item`` keys of the training pairs (int64 tensor)."""

    def build():
        matrix = _train_binary(dataset).tocoo()
        keys = matrix.row.astype(np.int64) * int(dataset.item_num) + matrix.col.astype(np.int64)
        return torch.from_numpy(np.unique(keys))

    return _cached(dataset, ("keys",), build)


def popularity_groups(dataset, config):
    """Short head (0) / long tail (1) items of the training split (see the module docstring)."""
    by = options.check_choices(config, {"fair_short_head_by": ("interactions", "items")}, "fairness metrics")[
        "fair_short_head_by"
    ]
    share = _share(config, "fair_short_head_share")

    def build():
        groups = short_head_groups(train_popularity(dataset).numpy(), share, by)
        check_groups(groups, POPULARITY_GROUP_NAMES, "fair_short_head_share", "short head / long tail items")
        return Groups(torch.from_numpy(groups), POPULARITY_GROUP_NAMES)

    return _cached(dataset, ("popgroups", by, share), build)


def _field_groups(dataset, source, field, key):
    from recbole.utils import FeatureType

    feat = dataset.item_feat if source == "item" else dataset.user_feat
    id_field = dataset.iid_field if source == "item" else dataset.uid_field
    if not isinstance(field, str) or feat is None or field not in feat.interaction or field == id_field:
        raise ConfigError(
            f"{key}: '{field}' is not a column of dataset '{dataset.dataset_name}'s .{source} file; name a "
            f"single-token column of {dataset.dataset_name}.{source} and load it (load_col: {{{source}: "
            f"[{id_field}, {field}]}}), or set {key}: ~"
        )
    ftype = dataset.field2type[field]
    if ftype != FeatureType.TOKEN:
        raise ConfigError(
            f"{key}: '{field}' is a {ftype.value} column; groups need one token per {source} "
            f"(declare it '{field}:token' in the .{source} header)"
        )
    from recbole_ext.data.dataset import require_side_info

    require_side_info(dataset, source, key)
    values = feat[field].numpy()
    tokens = dataset.field2id_token[field]
    groups, names = value_groups(values, tokens)
    check_groups(groups, names, key, f"values of '{field}'")
    return Groups(torch.from_numpy(groups), names)


def item_groups(dataset, config):
    """Item groups: ``item_group_field`` (a single-token .item column) or, when ~, the popularity groups."""
    field = _get(config, "item_group_field")
    if field is None:
        return popularity_groups(dataset, config)
    return _cached(dataset, ("item", field), lambda: _field_groups(dataset, "item", field, "item_group_field"))


def user_groups(dataset, config):
    """User groups: ``user_group_field`` (a single-token .user column) or, when ~, activity groups."""
    return user_groups_from(dataset, config, _get(config, "user_group_field"), "user_group_field")


def user_groups_from(dataset, config, field, key):
    """User groups of the single-token .user column ``field`` (``key``: the config key that named it, for
    errors), or activity groups (``user_activity_share``) when ``field`` is ~ or ``"activity"``."""
    if field is not None and str(field).lower() != "activity":
        return _cached(dataset, ("user", field), lambda: _field_groups(dataset, "user", field, key))
    share = _share(config, "user_activity_share")

    def build():
        activity = np.diff(_train_binary(dataset).indptr).astype(np.float64)
        activity = np.concatenate([activity, np.zeros(int(dataset.user_num) - activity.size)])
        groups = activity_groups(activity, share)
        check_groups(groups, ACTIVITY_GROUP_NAMES, "user_activity_share", "active / inactive users")
        return Groups(torch.from_numpy(groups), ACTIVITY_GROUP_NAMES)

    return _cached(dataset, ("activity", share), build)
