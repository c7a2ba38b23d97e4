"""Popularity bins, per-user target distributions and user groups (CaliTune spec §3, §9.3).

Shared by the calibration metrics (``jsd@k``, ``miscalkl@k``, ``usergroup``), the CP re-ranker and
the CaliTune trainer.

* **Item groups** — HighPop / MidPop / LowPop (0 / 1 / 2) by *interaction mass*: items sorted by the
  number of distinct users, descending (stable, ties by ascending internal id — spec quirk C5); the
  item whose cumulative count first reaches 20 % of the total closes HighPop, the one that first
  reaches 80 % closes MidPop. Popularity is counted on the **full** ``.inter`` file by default
  (quirk C1, ``popularity_source: full``); ``popularity_source: train`` counts the training split.
* **User targets** P_u — the share of the user's training interactions in each group (PAD = 0).
* **User groups** — Mainstream / Diverse / Niche (0 / 1 / 2): users sorted by their HighPop share,
  descending (stable, ties by ascending id); boundaries ``round(0.2 n)`` and ``round(0.8 n)``.

Config keys (defaults in ``properties/overall.yaml``): ``popularity_source``, ``popularity_proportions``,
``user_group_proportions``.
"""

import os
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from recbole_ext import options
from recbole_ext.errors import ConfigError, DatasetError

ITEM_GROUP_NAMES = ("highpop", "midpop", "lowpop")
USER_GROUP_NAMES = ("mainstream", "diverse", "niche")
DEFAULT_PROPORTIONS = (0.2, 0.6, 0.2)


def _check_proportions(props, key):
    props = [float(p) for p in props]
    if len(props) != 3 or min(props) < 0 or abs(sum(props) - 1.0) > 1e-6:
        raise ConfigError(f"{key} must be three non-negative shares summing to 1 (e.g. [0.2, 0.6, 0.2]), got {props}")
    return props


def popularity_bins(popularity, proportions=DEFAULT_PROPORTIONS):
    """Group id (0 HighPop, 1 MidPop, 2 LowPop) per item from a popularity vector.

    ``popularity[0]`` is the PAD item and gets group -1. The item crossing a threshold belongs to the
    group it closes (``S_r >= share * T``, spec §3.1).
    """
    pop = np.asarray(popularity, dtype=np.float64)
    n = pop.shape[0]
    groups = np.full(n, -1, dtype=np.int64)
    if n <= 1:
        return groups
    real = pop[1:]
    order = np.argsort(-real, kind="stable")  # descending, ties by ascending id
    cumulative = np.cumsum(real[order])
    total = cumulative[-1]
    if total <= 0:
        raise DatasetError("cannot build popularity bins: the dataset has no interactions")
    p1 = proportions[0]
    p2 = proportions[0] + proportions[1]
    r1 = int(np.argmax(cumulative >= p1 * total - 1e-9 * total))
    r2 = int(np.argmax(cumulative >= p2 * total - 1e-9 * total))
    r2 = max(r2, r1)
    ranked = np.full(real.shape[0], 2, dtype=np.int64)
    ranked[: r1 + 1] = 0
    ranked[r1 + 1 : r2 + 1] = 1
    groups[1 + order] = ranked
    return groups


def one_hot_groups(groups, n_groups=3):
    """``[n, n_groups]`` float one-hot matrix; rows with group -1 (PAD) are all zero."""
    groups = torch.as_tensor(groups, dtype=torch.long)
    out = torch.zeros(groups.shape[0], n_groups)
    valid = groups >= 0
    out[valid, groups[valid]] = 1.0
    return out


def _full_item_popularity(dataset, config):
    """Distinct users per internal item id over the whole ``.inter`` file (quirk C1)."""
    path = os.path.join(config["data_path"], f"{dataset.dataset_name}.inter")
    if not os.path.isfile(path):
        raise DatasetError(
            f"popularity_source: full needs the atomic file {path}; set popularity_source: train to count "
            "popularity on the training split instead"
        )
    uid, iid = dataset.uid_field, dataset.iid_field
    sep = config["field_separator"]
    header = pd.read_csv(path, sep=sep, nrows=0).columns
    names = {c.split(":")[0]: c for c in header}
    if uid not in names or iid not in names:
        raise DatasetError(f"{path} has no '{uid}' / '{iid}' columns; cannot count item popularity")
    frame = pd.read_csv(path, sep=sep, usecols=[names[uid], names[iid]], dtype=str, engine="c")
    users = frame[names[uid]].map(dataset.field2token_id[uid])
    items = frame[names[iid]].map(dataset.field2token_id[iid])
    keep = users.notna() & items.notna()
    pairs = np.unique(
        np.stack([users[keep].to_numpy(np.int64), items[keep].to_numpy(np.int64)], axis=1), axis=0
    )
    return np.bincount(pairs[:, 1], minlength=dataset.item_num).astype(np.float64)


def item_popularity(dataset, config, source):
    """Distinct-user count per internal item id (index 0 = PAD = 0), over the whole ``.inter`` file
    (``source`` full) or the training split (train)."""
    if source == "full":
        pop = _full_item_popularity(dataset, config)
    else:
        matrix = dataset.inter_matrix(form="csr")
        matrix.data[:] = 1.0
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        pop = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float64)
    pop[0] = 0.0
    return pop


def user_targets(dataset, item_onehot):
    """P_u: ``[n_users, 3]`` share of the user's (training) interactions per item group; PAD / empty = 0."""
    matrix = dataset.inter_matrix(form="csr").astype(np.float64)
    matrix.data[:] = 1.0
    counts = torch.from_numpy(np.asarray(matrix @ item_onehot.double().numpy()))
    totals = counts.sum(dim=1, keepdim=True)
    return torch.where(totals > 0, counts / totals.clamp_min(1e-12), torch.zeros_like(counts)).float()


def user_groups(targets, proportions=DEFAULT_PROPORTIONS, valid=None):
    """Group id (0 Mainstream, 1 Diverse, 2 Niche) per user by HighPop share; PAD / invalid = -1."""
    targets = torch.as_tensor(targets)
    n = targets.shape[0]
    groups = torch.full((n,), -1, dtype=torch.long)
    if valid is None:
        valid = targets.sum(dim=1) > 0
    valid = torch.as_tensor(valid, dtype=torch.bool).clone()
    valid[0] = False
    ids = torch.nonzero(valid).squeeze(1)
    share = targets[ids, 0].numpy()
    order = ids.numpy()[np.argsort(-share, kind="stable")]
    count = len(order)
    b1 = int(round(proportions[0] * count))
    b2 = int(round((proportions[0] + proportions[1]) * count))
    ranked = np.full(count, 2, dtype=np.int64)
    ranked[:b1] = 0
    ranked[b1:b2] = 1
    groups[torch.from_numpy(order)] = torch.from_numpy(ranked)
    return groups


class CalibrationData(NamedTuple):
    """Item popularity and groups, one-hot matrix, user targets and user groups of one training dataset."""

    item_popularity: torch.Tensor
    item_group: torch.Tensor
    item_onehot: torch.Tensor
    user_target: torch.Tensor
    user_group: torch.Tensor


def calibration_data(dataset, config):
    """:class:`CalibrationData` for ``dataset`` (the *training* split), cached on the dataset object."""
    source = options.check_choices(config, {"popularity_source": ("full", "train")}, "popularity")["popularity_source"]
    item_props = tuple(_check_proportions(config["popularity_proportions"], "popularity_proportions"))
    user_props = tuple(_check_proportions(config["user_group_proportions"], "user_group_proportions"))
    key = (source, item_props, user_props)
    cache = getattr(dataset, "_recbole_ext_calibration", None)
    if cache is not None and cache[0] == key:
        return cache[1]
    pop = item_popularity(dataset, config, source)
    groups = torch.from_numpy(popularity_bins(pop, item_props))
    onehot = one_hot_groups(groups)
    targets = user_targets(dataset, onehot)
    ugroups = user_groups(targets, user_props)
    data = CalibrationData(torch.from_numpy(pop), groups, onehot, targets, ugroups)
    dataset._recbole_ext_calibration = (key, data)
    return data
