"""Popularity bins, user targets / groups, JSD@k, MisCalKL, UserGroup and RBO on hand-computed cases."""

import math
import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import yaml
from recbole.evaluator.collector import DataStruct

import recbole_ext  # noqa: F401
from recbole_ext.data.popularity import one_hot_groups, popularity_bins, user_groups, user_targets
from recbole_ext.errors import ConfigError
from recbole_ext.options import PROPERTIES_DIR
from recbole_ext.analysis import ndcg_from_hits, rbo
from recbole_ext.evaluator.metrics.calibration import (
    JSD,
    MisCalKL,
    UserGroup,
    jsd,
    list_group_shares,
    miscalibration_kl,
)

torch.set_num_threads(1)
OVERALL = yaml.safe_load(open(os.path.join(PROPERTIES_DIR, "overall.yaml"), encoding="utf-8"))


def test_popularity_bins_hand_example():
    # PAD, then popularities 10, 5, 3, 1, 1 (total 20): cum 10 >= 4 closes HighPop at rank 0,
    # cum 18 >= 16 closes MidPop at rank 2.
    groups = popularity_bins([0, 10, 5, 3, 1, 1])
    assert groups.tolist() == [-1, 0, 1, 1, 2, 2]


def test_popularity_bins_ties_are_stable_by_id():
    groups = popularity_bins([0, 1, 1, 1, 1, 1])  # total 5: HighPop closes at cum 1 >= 1
    assert groups.tolist() == [-1, 0, 1, 1, 1, 2]


def test_popularity_bins_cover_20_60_20_of_interactions():
    rng = np.random.default_rng(0)
    pop = np.concatenate([[0], rng.zipf(1.5, size=2000).clip(max=5000)]).astype(float)
    groups = popularity_bins(pop)
    total = pop.sum()
    order = np.argsort(-pop[1:], kind="stable") + 1
    cum = np.cumsum(pop[order]) / total
    for g, upper in ((0, 0.2), (1, 0.8)):
        last = np.nonzero(groups[order] <= g)[0].max()  # last rank inside groups 0..g
        assert cum[last] >= upper - 1e-12  # the closing item reaches the threshold ...
        assert last == 0 or cum[last - 1] < upper  # ... and the one before does not
    assert (groups[1:] >= 0).all() and groups[0] == -1


def test_user_targets_and_one_hot():
    class Stub:
        def inter_matrix(self, form="csr"):
            # user 1: items 1, 2, 3; user 2: item 3 twice (counts once per interaction row)
            rows, cols = [1, 1, 1, 2], [1, 2, 3, 3]
            return sp.csr_matrix((np.ones(4), (rows, cols)), shape=(3, 4))

    onehot = one_hot_groups(torch.tensor([-1, 0, 1, 2]))
    assert onehot[0].tolist() == [0, 0, 0]
    targets = user_targets(Stub(), onehot)
    assert targets[0].tolist() == [0, 0, 0]
    assert torch.allclose(targets[1], torch.tensor([1 / 3, 1 / 3, 1 / 3]))
    assert targets[2].tolist() == [0, 0, 1]


def test_user_groups_20_60_20_by_highpop_share():
    highpop = torch.tensor([0.0, 0.9, 0.1, 0.5, 0.7, 0.3, 0.2, 0.8, 0.4, 0.6, 0.05])
    targets = torch.stack([highpop, 1 - highpop, torch.zeros(11)], 1)
    targets[0] = 0
    groups = user_groups(targets)
    # 10 real users: top round(2) by HighPop share = users 1 (0.9), 7 (0.8); bottom 2 = 2 (0.1), 10 (0.05)
    assert groups[0] == -1
    assert sorted(torch.nonzero(groups == 0).squeeze(1).tolist()) == [1, 7]
    assert sorted(torch.nonzero(groups == 2).squeeze(1).tolist()) == [2, 10]
    assert int((groups == 1).sum()) == 6


def test_jsd_hand_computed():
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([1.0, 0.0, 0.0])
    # M = (.75, .25, 0); KL(q||M) = log2(4/3); KL(p||M) = .5 log2(2/3) + .5 log2(2)
    expected = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5)
    assert float(jsd(p, q)) == pytest.approx(expected, abs=1e-8)
    assert float(jsd(p, p)) == pytest.approx(0.0, abs=1e-8)
    assert float(jsd(torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]))) == pytest.approx(1.0, abs=1e-8)


def test_group_shares_of_lists():
    item_group = torch.tensor([-1, 0, 1, 2, 2])
    shares = list_group_shares(torch.tensor([[1, 3, 4, 2]]), item_group)
    assert shares[0, 0].tolist() == [1, 0, 0]
    assert shares[0, 1].tolist() == [0.5, 0, 0.5]
    assert torch.allclose(shares[0, 2], torch.tensor([1 / 3, 0, 2 / 3], dtype=torch.float64))
    assert shares[0, 3].tolist() == [0.25, 0.25, 0.5]


def test_miscalibration_kl_hand_computed():
    value = miscalibration_kl(torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), alpha=0.01)
    assert float(value) == pytest.approx(math.log(100), rel=1e-9)
    assert float(miscalibration_kl(torch.tensor([0.2, 0.8, 0]), torch.tensor([0.2, 0.8, 0]))) == pytest.approx(0)


def _struct(items, users, item_group, targets, user_group=None, hits=None):
    ds = DataStruct()
    ds.set("rec.items", items)
    ds.set("rec.users", users)
    ds.set("calib.item_group", item_group)
    ds.set("calib.user_target", targets)
    if user_group is not None:
        ds.set("calib.user_group", user_group)
    if hits is not None:
        ds.set("rec.topk", hits)
    return ds


def test_jsd_and_miscal_metrics_through_recbole_interface():
    config = dict(OVERALL, topk=[1, 2], metric_decimal_place=6)
    item_group = torch.tensor([-1, 0, 1, 2])
    targets = torch.tensor([[0, 0, 0], [0.5, 0.5, 0], [0, 0, 1.0]])
    items = torch.tensor([[1, 2], [3, 1]])
    users = torch.tensor([1, 2])
    out = JSD(config).calculate_metric(_struct(items, users, item_group, targets))
    j1 = (float(jsd(targets[1], torch.tensor([1.0, 0, 0]))) + 0.0) / 2  # user 2's first item is LowPop: JSD 0
    j2 = (0.0 + float(jsd(targets[2], torch.tensor([0.5, 0, 0.5])))) / 2
    assert out["jsd@1"] == pytest.approx(j1, abs=1e-6)
    assert out["jsd@2"] == pytest.approx(j2, abs=1e-6)
    kl = MisCalKL(config).calculate_metric(_struct(items, users, item_group, targets))
    assert kl["miscalkl@1"] == pytest.approx(float(miscalibration_kl(targets[1], torch.tensor([1.0, 0, 0]))) / 2, abs=1e-6)
    with pytest.raises(ConfigError):
        MisCalKL(dict(config, miscal_alpha=2.0))


def test_user_group_metric_means_within_groups():
    config = dict(OVERALL, topk=[2], metric_decimal_place=6, usergroup_metrics=["ndcg", "jsd"])
    item_group = torch.tensor([-1, 0, 1, 2])
    targets = torch.tensor([[0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    user_group = torch.tensor([-1, 0, 1, 2])
    items = torch.tensor([[1, 2], [2, 3], [3, 1]])
    users = torch.tensor([1, 2, 3])
    # hit flags at ranks 1..2 and the number of positives (RecBole's rec.topk layout)
    hits = torch.tensor([[1, 0, 1], [0, 1, 2], [0, 0, 1]])
    out = UserGroup(config).calculate_metric(_struct(items, users, item_group, targets, user_group, hits))
    assert out["ndcg_mainstream@2"] == pytest.approx(1.0)
    assert out["ndcg_diverse@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)), abs=1e-6)
    assert out["ndcg_niche@2"] == pytest.approx(0.0)
    assert out["jsd_mainstream@2"] == pytest.approx(float(jsd(targets[1], torch.tensor([0.5, 0.5, 0]))), abs=1e-6)
    assert out["jsd_niche@2"] == pytest.approx(float(jsd(targets[3], torch.tensor([0.5, 0, 0.5]))), abs=1e-6)


def test_ndcg_from_hits():
    value = ndcg_from_hits(torch.tensor([[0, 1, 0], [0, 0, 0]]), torch.tensor([2, 0]))
    assert float(value[0]) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert float(value[1]) == 0.0


def test_rbo_hand_computed():
    truncated, ext = rbo(torch.tensor([[1, 2], [1, 2], [1, 2]]), torch.tensor([[2, 1], [1, 2], [3, 4]]), p=0.9)
    # swapped: A1 = 0, A2 = 1 -> 0.1 * 0.9 = 0.09; ext = 0.81 + (0.1 / 0.9) * 0.81 = 0.9
    assert truncated.tolist() == pytest.approx([0.09, 1 - 0.9**2, 0.0])
    assert ext.tolist() == pytest.approx([0.9, 1.0, 0.0])
    with pytest.raises(ConfigError):
        rbo(torch.tensor([[1]]), torch.tensor([[1]]), p=1.0)
