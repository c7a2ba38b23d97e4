"""Popularity-bias and fairness metrics (recbole_ext/evaluator/metrics/fairness.py) and their groups
(recbole_ext/data/groups.py) on hand-computed cases.

The example: 6 items (+ PAD), 4 users (+ PAD). Training pairs (distinct):

    u1: {1, 2, 3}   u2: {1, 2}   u3: {1, 4, 5}   u4: {1, 2}

popularity (distinct training users) pop = [PAD 0, 4, 3, 1, 1, 1, 0], total 10. Short head at 80 % of the
interactions: sorted 1 (4), 2 (3), 3 (1), 4 (1), 5 (1), 6 (0) -> cumulative 4, 7, 8 >= 8: head {1, 2, 3},
long tail {4, 5, 6}. User field: u1, u2 = 'F'; u3, u4 = 'M'. Activity (training items) 3, 2, 3, 2: with
share 0.25, round(1) = 1 active user, the most active with the lowest id: u1.

Evaluated rows (u4 has no test data), top-2 lists (training items masked) with hits and scores:

    u1: [4, 5]  hits [0, 1]  T = {5, 1}  (1 is also a training item: RecBole may list it, it is never hit)
    u2: [3, 4]  hits [1, 0]  T = {3, 6}
    u3: [2, 6]  hits [1, 0]  T = {2}
    scores u1 [.9, .5], u2 [.8, .4], u3 [.7, .1]

Every expected value below is worked out by hand in the comments.
"""

import math
import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import yaml
from recbole.evaluator.collector import DataStruct

import recbole_ext  # noqa: F401
from recbole_ext.data import groups as G
from recbole_ext.errors import ConfigError, DatasetError
from recbole_ext.evaluator.metrics import calibration, fairness as F
from recbole_ext.options import PROPERTIES_DIR

torch.set_num_threads(1)
OVERALL = yaml.safe_load(open(os.path.join(PROPERTIES_DIR, "overall.yaml"), encoding="utf-8"))
CONFIG = dict(OVERALL, topk=[1, 2], metric_decimal_place=10)
L3 = math.log2(3)

TRAIN = [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (3, 1), (3, 4), (3, 5), (4, 1), (4, 2)]
N_USERS, N_ITEMS = 5, 7
POP = [0, 4, 3, 1, 1, 1, 0]
POP_GROUP = [-1, 0, 0, 0, 1, 1, 1]
GENRE_GROUP = [-1, 0, 0, 1, 1, 2, 2]  # a {1, 2}, b {3, 4}, c {5, 6}
SEX_GROUP = [-1, 0, 0, 1, 1]  # f {u1, u2}, m {u3, u4}
ACTIVITY_GROUP = [-1, 0, 1, 1, 1]  # active {u1}
LISTS = [[4, 5], [3, 4], [2, 6]]
USERS = [1, 2, 3]
HITS = [[0, 1, 2], [1, 0, 2], [1, 0, 1]]  # hit flags at ranks 1..2, then |T_u|
POSITIVES = [(0, 5), (0, 1), (1, 3), (1, 6), (2, 2)]
SCORES = [[0.9, 0.5], [0.8, 0.4], [0.7, 0.1]]


def train_keys():
    return torch.tensor(sorted(u * N_ITEMS + i for u, i in TRAIN))


def struct(item_group=POP_GROUP, item_names=("shorthead", "longtail"), user_group=SEX_GROUP, user_names=("f", "m")):
    ds = DataStruct()
    ds.set("rec.items", torch.tensor(LISTS))
    ds.set("rec.users", torch.tensor(USERS))
    ds.set("rec.topk", torch.tensor(HITS))
    ds.set("rec.positives", torch.tensor(POSITIVES))
    ds.set("fair.item_pop", torch.tensor(POP, dtype=torch.float64))
    ds.set("fair.pop_group", torch.tensor(POP_GROUP))
    ds.set("fair.item_group", torch.tensor(item_group))
    ds.set("fair.item_group_names", tuple(item_names))
    ds.set("fair.user_group", torch.tensor(user_group))
    ds.set("fair.user_group_names", tuple(user_names))
    ds.set("fair.train_keys", train_keys())
    ds.set("fair.topk_scores", torch.tensor(SCORES, dtype=torch.float64))
    return ds


def run(cls, data=None, **config):
    return cls(dict(CONFIG, **config)).calculate_metric(data or struct())


# ------------------------------------------------------------------------------------------------
# per-user metrics
# ------------------------------------------------------------------------------------------------
def test_aclt_aplt_arp_hand_computed():
    # long-tail items per list: u1 [1, 2], u2 [0, 1], u3 [0, 1] -> ACLT@1 = 1/3, ACLT@2 = 4/3
    assert run(F.ACLT) == pytest.approx({"aclt@1": 1 / 3, "aclt@2": 4 / 3})
    # shares: u1 [1, 1], u2 [0, 1/2], u3 [0, 1/2] -> APLT@1 = 1/3, APLT@2 = 2/3
    assert run(F.APLT) == pytest.approx({"aplt@1": 1 / 3, "aplt@2": 2 / 3})
    # popularity of the lists: u1 [1, 1], u2 [1, 1], u3 [3, 0] -> ARP@1 = 5/3, ARP@2 = (1 + 1 + 1.5)/3 = 7/6
    assert run(F.ARP) == pytest.approx({"arp@1": 5 / 3, "arp@2": 7 / 6})
    per_user = F.APLT(CONFIG).per_user(struct())
    assert per_user.dtype == torch.float64 and per_user.tolist() == [[1, 1], [0, 0.5], [0, 0.5]]


# ------------------------------------------------------------------------------------------------
# RSP / REO
# ------------------------------------------------------------------------------------------------
def test_poprsp_hand_computed():
    # group sizes 3 / 3; the rows' training items per group: u1 SH 3, u2 SH 2, u3 SH 1 + LT 2
    # denominators: SH 3*3 - 6 = 3, LT 3*3 - 2 = 7
    # @2: recommended SH {3 (u2), 2 (u3)} = 2, LT 4 -> P = [2/3, 4/7]: std/mean = (1/21)/(13/21) = 1/13
    # @1: recommended 4 (LT), 3, 2 (SH) -> P = [2/3, 1/7]: std/mean = (11/42)/(17/42) = 11/17
    assert run(F.PopRSP) == pytest.approx({"poprsp@1": 11 / 17, "poprsp@2": 1 / 13})


def test_popreo_hand_computed():
    # test positives outside training: (u1, 5) LT, (u2, 3) SH, (u2, 6) LT, (u3, 2) SH -> 2 / 2
    # ((u1, 1) is a training item: left out)
    # @2: hits 5 (LT), 3 (SH), 2 (SH) -> P = [2/2, 1/2]: std/mean = (1/4)/(3/4) = 1/3
    # @1: hits 3, 2 (SH) -> P = [1, 0]: std/mean = 1
    assert run(F.PopREO) == pytest.approx({"popreo@1": 1.0, "popreo@2": 1 / 3})


def test_rsp_reo_three_item_groups():
    data = struct(item_group=GENRE_GROUP, item_names=("a", "b", "c"))
    # RSP@2: recommended a 1 (2), b 3 (4, 3, 4), c 2 (5, 6); group size 2 each
    # training items of the rows: u1 a2 b1, u2 a2, u3 a1 b1 c1 -> den a 6-5 = 1, b 6-2 = 4, c 6-1 = 5
    p = np.array([1 / 1, 3 / 4, 2 / 5])
    assert run(F.RSP, data)["rsp@2"] == pytest.approx(np.std(p) / np.mean(p))
    # REO@2: positives a {2}, b {3}, c {5, 6}; hits 2, 3, 5 -> P = [1, 1, 1/2]: std/mean = sqrt(2)/5
    assert run(F.REO, data)["reo@2"] == pytest.approx(math.sqrt(2) / 5)
    # parity: equal probabilities give 0
    assert F.relative_std(torch.tensor([0.3, 0.3, 0.3])) == pytest.approx(0.0)


# ------------------------------------------------------------------------------------------------
# bias disparity
# ------------------------------------------------------------------------------------------------
def test_bias_disparity_hand_computed():
    # training: f (u1, u2) SH 5, LT 0; m (u3, u4) SH 3, LT 2; P(C) = 3/6 for both groups
    # B_S: f [1/.5, 0] = [2, 0]; m [.6/.5, .4/.5] = [1.2, .8]
    bs = run(F.BiasDisparityBS)
    assert bs["biasdisparitybs_f_shorthead@2"] == pytest.approx(2.0)
    assert bs["biasdisparitybs_f_longtail@2"] == pytest.approx(0.0)
    assert bs["biasdisparitybs_m_shorthead@2"] == pytest.approx(1.2)
    assert bs["biasdisparitybs_m_longtail@2"] == pytest.approx(0.8)
    assert bs["biasdisparitybs_m_longtail@1"] == pytest.approx(0.8)  # B_S does not depend on k
    # top-2 lists: f (u1, u2) SH 1 (3), LT 3 -> B_R [.5, 1.5]; m (u3) SH 1, LT 1 -> [1, 1]
    br = run(F.BiasDisparityBR)
    assert br["biasdisparitybr_f_shorthead@2"] == pytest.approx(0.5)
    assert br["biasdisparitybr_f_longtail@2"] == pytest.approx(1.5)
    assert br["biasdisparitybr_m_shorthead@2"] == pytest.approx(1.0)
    # top-1: f items 4 (LT), 3 (SH) -> [1, 1]; m item 2 (SH) -> [2, 0]
    assert br["biasdisparitybr_m_shorthead@1"] == pytest.approx(2.0)
    # BD = (B_R - B_S) / B_S: f SH (.5 - 2)/2 = -.75, f LT 1.5/0 = inf, m SH -.2/1.2, m LT .2/.8
    bd = run(F.BiasDisparityBD)
    assert bd["biasdisparitybd_f_shorthead@2"] == pytest.approx(-0.75)
    assert bd["biasdisparitybd_f_longtail@2"] == math.inf
    assert bd["biasdisparitybd_m_shorthead@2"] == pytest.approx(-1 / 6)
    assert bd["biasdisparitybd_m_longtail@2"] == pytest.approx(0.25)


# ------------------------------------------------------------------------------------------------
# MAD
# ------------------------------------------------------------------------------------------------
def test_mad_over_three_groups():
    # group means 1.5, 3, 6 -> |1.5-3|, |1.5-6|, |3-6| = 1.5, 4.5, 3 -> 3; an empty group -> NaN
    values = torch.tensor([[1.0], [3.0], [6.0], [2.0], [9.0]])
    assert F.mad(values, torch.tensor([0, 1, 2, 0, -1]), 3).tolist() == [3.0]
    assert math.isnan(float(F.mad(values, torch.tensor([0, 0, 2, 0, -1]), 3)[0]))


def test_user_mad_ranking_hand_computed():
    data = struct(user_group=ACTIVITY_GROUP, user_names=("active", "inactive"))
    # nDCG: u1 (hits [0, 1], |T| 2): @1 0, @2 (1/L3)/(1 + 1/L3) = 1/(L3 + 1)
    #       u2 (hits [1, 0], |T| 2): @1 1, @2 1/(1 + 1/L3) = L3/(L3 + 1);  u3: 1, 1
    # active {u1}, inactive {u2, u3}: @1 |0 - 1| = 1; @2 (L3/(L3+1) + 1)/2 - 1/(L3+1) = (2 L3 - 1)/(2 (L3 + 1))
    out = run(F.UserMADranking, data)
    assert out == pytest.approx({"usermadranking@1": 1.0, "usermadranking@2": (2 * L3 - 1) / (2 * (L3 + 1))})
    # with APLT as the per-user metric: active [1, 1], inactive mean [0, 1/2]
    out = run(F.UserMADranking, data, fair_mad_metric="aplt")
    assert out == pytest.approx({"usermadranking@1": 1.0, "usermadranking@2": 0.5})


def test_item_mad_ranking_hand_computed():
    # @2 per-item hit rate among the lists recommending it: 4 0/2, 5 1/1, 3 1/1, 2 1/1, 6 0/1 (1: never)
    # SH {2, 3} mean 1; LT {4, 5, 6} mean 1/3 -> 2/3.  @1: 4 0/1, 3 1, 2 1 -> SH 1, LT 0 -> 1
    assert run(F.ItemMADranking) == pytest.approx({"itemmadranking@1": 1.0, "itemmadranking@2": 2 / 3})


def test_rating_mads_hand_computed():
    data = struct(user_group=ACTIVITY_GROUP, user_names=("active", "inactive"))
    # mean top-k score: @1 u1 .9, u2 .8, u3 .7; @2 u1 .7, u2 .6, u3 .4
    # active u1 vs inactive (u2, u3): @1 |.9 - .75| = .15; @2 |.7 - .5| = .2
    assert run(F.UserMADrating, data) == pytest.approx({"usermadrating@1": 0.15, "usermadrating@2": 0.2})
    # @2 item scores: 4 (.9 from u1 + .4 from u2)/2 = .65, 5 .5, 6 .1, 3 .8, 2 .7
    #    -> SH (.8 + .7)/2 = .75, LT (.65 + .5 + .1)/3 = 5/12 -> 1/3
    # @1: 4 .9, 3 .8, 2 .7 -> SH .75, LT .9 -> .15
    assert run(F.ItemMADrating) == pytest.approx({"itemmadrating@1": 0.15, "itemmadrating@2": 1 / 3})
    with pytest.raises(ConfigError, match="rank-derived"):
        F.UserMADrating(dict(CONFIG, rerank="cp"))
    with pytest.raises(ConfigError, match="rank-derived"):
        F.ItemMADrating(dict(CONFIG, rerank="cp"))


# ------------------------------------------------------------------------------------------------
# UserGroup breakdown by any user groups; per_user_metric of any per-user metric
# ------------------------------------------------------------------------------------------------
def test_user_group_breakdown_by_activity():
    data = struct()
    data.set("usergroup.user_group", torch.tensor(ACTIVITY_GROUP))
    data.set("usergroup.user_group_names", ("active", "inactive"))
    out = calibration.UserGroup(dict(CONFIG, usergroup_metrics=["aplt", "ndcg"])).calculate_metric(data)
    # APLT@2: active u1 1; inactive (1/2 + 1/2)/2.  nDCG@1: active 0, inactive 1
    assert out["aplt_active@2"] == pytest.approx(1.0)
    assert out["aplt_inactive@2"] == pytest.approx(0.5)
    assert out["ndcg_active@1"] == pytest.approx(0.0)
    assert out["ndcg_inactive@1"] == pytest.approx(1.0)


def test_per_user_metric_accepts_per_user_metrics_and_names_missing_inputs():
    values = calibration.per_user_metric("arp", CONFIG, struct())
    assert values.tolist() == [[1.0, 1.0], [1.0, 1.0], [3.0, 1.5]]
    data = DataStruct()
    data.set("rec.items", torch.tensor(LISTS))
    with pytest.raises(ConfigError, match="add 'aplt' to metrics"):
        calibration.per_user_metric("aplt", CONFIG, data)
    with pytest.raises(ConfigError, match="unknown metric"):
        calibration.per_user_metric("nosuch", CONFIG, data, key="fair_mad_metric")


# ------------------------------------------------------------------------------------------------
# groups
# ------------------------------------------------------------------------------------------------
def test_short_head_groups():
    assert G.short_head_groups(POP, 0.8).tolist() == POP_GROUP
    # 50 % of 10: cumulative 4 < 5, 7 >= 5 -> head {1, 2}
    assert G.short_head_groups(POP, 0.5).tolist() == [-1, 0, 0, 1, 1, 1, 1]
    # by items: ceil(0.5 * 6) = 3 most popular items
    assert G.short_head_groups(POP, 0.5, by="items").tolist() == [-1, 0, 0, 0, 1, 1, 1]
    # ties by ascending id: four items of popularity 1, 50 % -> cumulative 1, 2 >= 2 -> {1, 2}
    assert G.short_head_groups([0, 1, 1, 1, 1], 0.5).tolist() == [-1, 0, 0, 1, 1]


def test_activity_and_value_groups():
    activity = [0, 3, 2, 3, 2]
    assert G.activity_groups(activity, 0.25).tolist() == ACTIVITY_GROUP
    # round(0.5 * 4) = 2 active: u1 and u3 (3 each)
    assert G.activity_groups(activity, 0.5).tolist() == [-1, 0, 1, 0, 1]
    # token ids per row (row 0 = PAD; value 0 = [PAD] = no group); groups numbered by ascending id
    groups, names = G.value_groups([0, 2, 1, 2, 0], ["[PAD]", "F", "M"])
    assert groups.tolist() == [-1, 1, 0, 1, -1] and names == ("f", "m")
    assert G.group_name("Sci-Fi & Fantasy") == "sci-fi-fantasy"


class _Feat:
    def __init__(self, columns):
        self.interaction = columns

    def __getitem__(self, key):
        return self.interaction[key]


class FakeDataset:
    """The example's training split, with an .item column 'genre' (token) and 'price' (float) and a .user
    column 'sex' (token)."""

    dataset_name = "toy"
    uid_field, iid_field = "user_id", "item_id"
    user_num, item_num = N_USERS, N_ITEMS

    def __init__(self):
        from recbole.utils import FeatureType

        self.item_feat = _Feat({"item_id": torch.arange(N_ITEMS), "genre": torch.tensor([0, 1, 1, 2, 2, 3, 3]),
                                "price": torch.ones(N_ITEMS)})
        self.user_feat = _Feat({"user_id": torch.arange(N_USERS), "sex": torch.tensor([0, 1, 1, 2, 2])})
        self.field2type = {"genre": FeatureType.TOKEN, "sex": FeatureType.TOKEN, "price": FeatureType.FLOAT}
        self.field2id_token = {"genre": ["[PAD]", "a", "b", "c"], "sex": ["[PAD]", "F", "M"]}

    def inter_matrix(self, form="csr"):
        rows, cols = zip(*(TRAIN + [(1, 1)]))  # (1, 1) twice: one distinct interaction
        return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(N_USERS, N_ITEMS))


def test_dataset_groups_and_providers():
    ds = FakeDataset()
    assert G.train_popularity(ds).tolist() == POP
    assert F._train_keys(ds, CONFIG).tolist() == train_keys().tolist()
    popgroups = G.popularity_groups(ds, CONFIG)
    assert popgroups.ids.tolist() == POP_GROUP and popgroups.names == ("shorthead", "longtail")
    assert F._pop_group(ds, CONFIG).tolist() == POP_GROUP
    assert F._item_group(ds, CONFIG).tolist() == POP_GROUP  # item_group_field: ~
    config = dict(CONFIG, item_group_field="genre", user_group_field="sex")
    assert F._item_group(ds, config).tolist() == GENRE_GROUP
    assert F._item_group_names(ds, config) == ("a", "b", "c")
    assert F._user_group(ds, config).tolist() == SEX_GROUP
    assert F._user_group_names(ds, config) == ("f", "m")
    assert F._user_group(ds, dict(CONFIG, user_activity_share=0.25)).tolist() == ACTIVITY_GROUP
    assert calibration._usergroup_ids(ds, dict(CONFIG, usergroup_source="sex")).tolist() == SEX_GROUP
    assert calibration._usergroup_names(ds, dict(CONFIG, usergroup_source="activity")) == ("active", "inactive")


@pytest.mark.parametrize(
    "config, error, words",
    [
        ({"item_group_field": "nosuch"}, ConfigError, "item_group_field: 'nosuch' is not a column"),
        ({"item_group_field": "price"}, ConfigError, "item_group_field: 'price' is a float column"),
        ({"user_group_field": "nosuch"}, ConfigError, "user_group_field"),
        ({"fair_short_head_share": 1.5}, ConfigError, "fair_short_head_share must lie strictly between 0 and 1"),
        ({"fair_short_head_share": "half"}, ConfigError, "fair_short_head_share must be a number"),
        ({"fair_short_head_by": "votes"}, ConfigError, "fair_short_head_by must be one of"),
        # by items, ceil(0.99 * 6) = 6: every item in the head, the long tail is empty
        ({"fair_short_head_by": "items", "fair_short_head_share": 0.99}, DatasetError, "['longtail'] have no member"),
    ],
)
def test_config_errors(config, error, words):
    ds = FakeDataset()
    with pytest.raises(error) as info:
        F._item_group(ds, dict(CONFIG, **config))
        F._user_group(ds, dict(CONFIG, **config))
    assert words in str(info.value)


def test_user_activity_share_and_usergroup_source_errors():
    ds = FakeDataset()
    with pytest.raises(ConfigError, match="user_activity_share must lie"):
        F._user_group(ds, dict(CONFIG, user_activity_share=0))
    with pytest.raises(ConfigError, match="usergroup_source: 'nosuch' is not a column"):
        calibration._usergroup_ids(ds, dict(CONFIG, usergroup_source="nosuch"))
    # a single group cannot be compared
    with pytest.raises(DatasetError, match="at least two"):
        G.check_groups(np.array([-1, 0, 0]), ("a",), "item_group_field", "values of 'x'")


# ------------------------------------------------------------------------------------------------
# end to end on ml-100k
# ------------------------------------------------------------------------------------------------
METRICS = ["NDCG", "ACLT", "APLT", "ARP", "PopRSP", "PopREO", "RSP", "REO", "BiasDisparityBD", "UserMADranking",
           "ItemMADranking", "UserMADrating", "UserGroup"]


def _run(model, tmp_path):
    from recbole_ext.quick_start import run_recbole

    out = run_recbole(model, "ml-100k", config_dict={
        "metrics": METRICS, "topk": [10], "valid_metric": "NDCG@10", "epochs": 1, "show_progress": False,
        "state": "WARNING", "checkpoint_dir": str(tmp_path), "results_dir": str(tmp_path),
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"], "user": ["user_id", "gender"]},
        "user_group_field": "gender", "usergroup_source": "gender", "usergroup_metrics": ["ndcg", "aplt"],
    })
    return out["test_result"]


def test_ml100k_pop_vs_bpr(run_dir, tmp_path):
    pop, bpr = _run("Pop", tmp_path), _run("BPR", tmp_path)
    for result in (pop, bpr):
        assert 0 <= result["aplt@10"] <= 1 and 0 <= result["aclt@10"] <= 10
        assert result["aclt@10"] == pytest.approx(10 * result["aplt@10"], abs=1e-3)
        assert 0 <= result["poprsp@10"] <= 1 and 0 <= result["popreo@10"] <= 1  # two groups: std/mean <= 1
        assert result["rsp@10"] == result["poprsp@10"]  # item_group_field: ~ -> the same groups
        assert result["usermadranking@10"] >= 0 and result["usermadrating@10"] >= 0
        assert {"biasdisparitybd_m_shorthead@10", "biasdisparitybd_f_longtail@10"} <= set(result)
        assert {"ndcg_m@10", "ndcg_f@10", "aplt_m@10", "aplt_f@10"} <= set(result)
    # Pop recommends the most popular items only: no long tail, maximal disparity between the groups
    assert pop["aplt@10"] == 0 and pop["aclt@10"] == 0
    assert pop["poprsp@10"] == pytest.approx(1.0)
    assert pop["biasdisparitybd_m_longtail@10"] == pytest.approx(-1.0)
    assert pop["arp@10"] > bpr["arp@10"]
    assert bpr["aplt@10"] > pop["aplt@10"]
