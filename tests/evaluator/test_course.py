"""Course metric suite (recbole_ext/evaluator/metrics/course.py) against hand-computed values.

The example: 6 items (+ PAD), 5 users (+ PAD), 3 evaluated users, top-3 lists

    u1: [1, 2, 3]  hits [1, 0, 1]  |T| = 2   T = {1, 3}
    u2: [1, 2, 4]  hits [0, 0, 0]  |T| = 1   T = {6}
    u3: [1, 5, 2]  hits [0, 1, 0]  |T| = 4   T = {5, 6, 3, 4}

training popularity pop = [PAD 0, 4, 2, 1, 1, 0, 0] (N = 8). Every expected value below is worked out
by hand in the comments.
"""

import itertools
import os
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from recbole.evaluator.collector import DataStruct
from recbole.evaluator.metrics import Hit, Precision, Recall, ShannonEntropy

from recbole_ext.evaluator.metrics import course
from tests.helpers import REPO, run_cli

LISTS = [[1, 2, 3], [1, 2, 4], [1, 5, 2]]
HITS = [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
POS_LEN = [2, 1, 4]
POSITIVES = [(0, 1), (0, 3), (1, 6), (2, 5), (2, 6), (2, 3), (2, 4)]
POP = [0, 4, 2, 1, 1, 0, 0]
CONFIG = {"topk": [3], "metric_decimal_place": 8}


@pytest.fixture
def struct():
    ds = DataStruct()
    ds.set("rec.items", torch.tensor(LISTS))
    ds.set("rec.topk", torch.cat([torch.tensor(HITS), torch.tensor(POS_LEN)[:, None]], dim=1))
    ds.set("rec.positives", torch.tensor(POSITIVES))
    ds.set("data.num_items", 7)
    ds.set("data.num_users", 6)
    ds.set("course.item_pop", torch.tensor(POP, dtype=torch.float64))
    ds.set("course.train_avgpop", torch.tensor(0.5, dtype=torch.float64))
    return ds


def value(cls, struct):
    result = cls(CONFIG).calculate_metric(struct)
    (key, val), = result.items()
    assert key == f"{cls.__name__.lower()}@3"
    return val


HAND = {
    # (1 + 0 + 1/3) / 3
    course.Precision_MinDen: 4 / 9,
    # u1 (1 + 2/3)/3, u2 0, u3 (1/2)/3
    course.MAP_ListLen: 13 / 54,
    # u1 1 + 1/3, u2 0, u3 1/2
    course.ARHR: 11 / 18,
    # P = 1/3, R = 5/12 -> 2PR/(P+R)
    course.F1: 10 / 27,
    # self-information 1,2,3,3,0,0: (6 + 6 + 3) / 6 items / 3 users
    course.Novelty: 15 / 18,
    # q = pop / 4: ((1.75 + 1.75 + 1.5) / 3) / 3
    course.NormAveragePopularity: 5 / 9,
    # c = [3,3,1,1,1,0]: 1 - [(21 - 9)/3] / (9 - 3)
    course.Diversity_MeanInterList: 1 / 3,
    # 1 - 21/81
    course.Diversity_Herfindahl: 60 / 81,
    # sorted [0,1,1,1,3,3], weights (7-j)/7: 2 * 3 / 9
    course.Diversity_Gini: 2 / 3,
    # p = [3,3,1,1,1]/9 -> (4/3) log2 3
    course.ShannonEntropy_Bits: 4 / 3 * math.log2(3),
    course.Coverage_Item: 5 / 6,
    # hit items {1, 3, 5}
    course.Coverage_ItemHit: 3 / 6,
    # 3 of 5 users have lists / 2 of 5 have a hit / 3 of 5 have test data
    course.Coverage_User: 3 / 5,
    course.Coverage_UserHit: 2 / 5,
    course.Users_In_GT: 3 / 5,
    # test items {1, 3, 4, 5, 6}
    course.Items_In_GT: 5 / 6,
    # entropy of pop [4,2,1,1,0,0] = 1.75 bits
    course.Ratio_ShannonEntropy: (4 / 3 * math.log2(3)) / 1.75,
    # Herfindahl of pop = 1 - 22/64
    course.Ratio_Diversity_Herfindahl: (60 / 81) / (42 / 64),
    # Gini diversity of pop: sorted [0,0,1,1,2,4] -> 2 * (15/7) / 8
    course.Ratio_Diversity_Gini: (2 / 3) / (15 / 28),
    # training novelty = (4*1 + 2*2 + 1*3 + 1*3) / 6 items / 5 users = 7/15
    course.Ratio_Novelty: (15 / 18) / (7 / 15),
    course.Ratio_AveragePopularity: (5 / 9) / 0.5,
}


@pytest.mark.parametrize("cls", list(HAND), ids=lambda c: c.__name__)
def test_hand_computed(cls, struct):
    assert value(cls, struct) == pytest.approx(HAND[cls], abs=1e-7)


def test_mean_inter_list_equals_pairwise_overlap(struct):
    pairs = [1 - len(set(a) & set(b)) / 3 for a, b in itertools.permutations(LISTS, 2)]
    assert value(course.Diversity_MeanInterList, struct) == pytest.approx(np.mean(pairs))
    # random lists: the closed form still equals the mean over ordered pairs
    rng = np.random.default_rng(0)
    lists = np.stack([rng.choice(np.arange(1, 30), size=5, replace=False) for _ in range(12)])
    counts = np.bincount(lists.ravel(), minlength=30)[1:]
    pairs = [1 - len(set(a) & set(b)) / 5 for a, b in itertools.permutations(lists.tolist(), 2)]
    assert course.mean_inter_list(counts, 12, 5) == pytest.approx(np.mean(pairs))


def test_gini_diversity_identity():
    rng = np.random.default_rng(1)
    for _ in range(5):
        c = rng.integers(0, 20, size=37).astype(float)
        n = c.size
        s = np.sort(c)
        j = np.arange(1, n + 1)
        gini = np.sum((2 * j - n - 1) * s) / (n * s.sum())  # standard Gini index
        assert course.gini_diversity(c) == pytest.approx(1 - gini * n / (n + 1))


def test_entropy_relation_to_recbole(struct):
    """RecBole's shannonentropy = H_bits * ln 2 / (number of distinct recommended items)."""
    recbole = ShannonEntropy(CONFIG).calculate_metric(struct)["shannonentropy@3"]
    ours = value(course.ShannonEntropy_Bits, struct)
    assert recbole == pytest.approx(ours * math.log(2) / 5, abs=1e-6)


def test_f1_and_user_hit_relations(struct):
    p = Precision(CONFIG).calculate_metric(struct)["precision@3"]
    r = Recall(CONFIG).calculate_metric(struct)["recall@3"]
    assert value(course.F1, struct) == pytest.approx(2 * p * r / (p + r), abs=1e-7)
    hit = Hit(CONFIG).calculate_metric(struct)["hit@3"]
    assert value(course.Coverage_UserHit, struct) == pytest.approx(hit * value(course.Coverage_User, struct))


def test_train_providers():
    class FakeDataset:
        def inter_matrix(self, form="csr"):
            # PAD row; u1 {1, 2}; u2 {1} (listed twice: one distinct interaction); u3 none
            rows, cols = [1, 1, 2, 2], [1, 2, 1, 1]
            return sp.csr_matrix((np.ones(4), (rows, cols)), shape=(4, 4))

    pop = course._item_pop(FakeDataset(), None)
    assert pop.tolist() == [0, 2, 1, 0]
    # q = [0, 1, .5, 0]: u1 .75, u2 1, u3 0 (empty profile counts)
    assert float(course._train_avgpop(FakeDataset(), None)) == pytest.approx(1.75 / 3)


def test_names_do_not_shadow_recbole():
    from recbole.evaluator.register import metrics_dict

    assert metrics_dict["giniindex"].__module__.startswith("recbole.")
    assert metrics_dict["map"].__module__.startswith("recbole.")
    for name in ("diversity_gini", "map_listlen", "shannonentropy_bits", "normaveragepopularity", "coverage_item"):
        assert metrics_dict[name].__module__ == course.__name__


def test_run_recbole_cli_all_metrics(run_dir):
    """Every course metric through run_recbole.py on ml-100k (GF-CF, closed form: fast)."""
    names = [c.__name__ for c in HAND]
    out = run_cli(
        [
            "--model=GFCF",
            "--dataset=ml-100k",
            f"--config_files={os.path.join(REPO, 'properties', 'gfcf_ml-100k.yaml')}",
            f"--metrics={['Recall', 'NDCG'] + names}",
            "--topk=[10]",
            "--valid_metric=NDCG@10",
            "--state=WARNING",
            "--show_progress=False",
        ]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    table = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines() if "@10" in line}
    for name in names:
        assert f"{name.lower()}@10" in table
        values = [float(v) for v in table[f"{name.lower()}@10"]]
        assert all(math.isfinite(v) for v in values)
    assert 0 < float(table["diversity_gini@10"][1]) < 1
    assert 0 < float(table["coverage_item@10"][1]) <= 1
