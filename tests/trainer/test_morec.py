"""MoRec unit tests: metrics on hand-computed cases, signed SGD / controller on the spec's worked
examples, sampler batch composition, grouping helpers, data conversion and bad input."""

import math
import os

import numpy as np
import pytest
import torch
import yaml
from recbole.evaluator.collector import DataStruct

from recbole_ext.data import morec_data
from recbole_ext.errors import ConfigError, DatasetError
from recbole_ext.evaluator.metrics import morec as M
from recbole_ext.options import PROPERTIES_DIR
from recbole_ext.trainer.morec.controller import PIController, build_coordinator
from recbole_ext.trainer.morec.sampler import MoRecSampler, group_counts, signed_sgd_update
from recbole_ext.trainer.morec.signals import alignment_signal, fairness_signal
from tests.helpers import REPO

# the shared data sets lie beside the repository (../shared), as in CI
EXAMPLE = os.path.join(os.path.dirname(REPO), "shared", "datasets", "morec-example")


# ------------------------------------------------------------------------------------------ metrics
def _struct(batch_start=(0, 0, 2)):
    # rows: [5,3,1] target 3 (rank 1); [2,4,6] target 6 (rank 2); [7,1,2] target 7 (rank 0)
    s = DataStruct()
    s.set("rec.items", torch.tensor([[5, 3, 1], [2, 4, 6], [7, 1, 2]]))
    s.set("rec.positives", torch.tensor([[0, 3], [1, 6], [2, 7]]))
    price = torch.zeros(8, dtype=torch.float64)
    price[3], price[6], price[7] = 10.0, 20.0, 4.0
    s.set("morec.item_weight", price)
    s.set("morec.item_fair_group", torch.tensor([0, 1, 1, 1, 2, 2, 1, 2]))
    s.set("morec.item_align_group", torch.tensor([0, 1, 1, 2, 2, 1, 2, 1]))
    s.set("morec.align_expected", torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64))
    s.set("morec.batch_start", torch.tensor(batch_start))
    return s


OVERALL = yaml.safe_load(open(os.path.join(PROPERTIES_DIR, "overall.yaml"), encoding="utf-8"))
CFG = {**OVERALL, "topk": [2], "metric_decimal_place": 8}
L3 = 1.0 / math.log2(3)


@pytest.mark.parametrize(
    "cls,key,expected",
    [
        (M.RHit, "rhit@2", (10 + 0 + 4) / 3),
        (M.RNDCG, "rndcg@2", (10 * L3 + 4) / 3),
        (M.MinHit, "minhit@2", 0.5),  # group 1: targets 3 (hit), 6 (miss); group 2: target 7 (hit)
        (M.MinNDCG, "minndcg@2", L3 / 2),
        (M.MinRHit, "minrhit@2", 4.0),  # group 1: (10 + 0) / 2 = 5, group 2: 4
        (M.MinRNDCG, "minrndcg@2", min(10 * L3 / 2, 4.0)),
    ],
)
def test_pair_metrics_hand_computed(cls, key, expected):
    assert cls(CFG).calculate_metric(_struct())[key] == pytest.approx(expected, abs=1e-7)


def test_popkl_hand_computed_batch_and_global():
    # top-2 groups: row0 [1,2], row1 [1,2], row2 [1,1]
    # batches {0,1}, {2}: q = mean((.5,.5),(1,0)) = (.75,.25); pooled: (4/6, 2/6)
    kl = lambda q: 0.5 * math.log(0.5 / q[0]) + 0.5 * math.log(0.5 / q[1])  # noqa: E731
    batch = {**CFG, "morec_popkl_aggregate": "batch"}
    assert M.PopKL(batch).calculate_metric(_struct())["popkl@2"] == pytest.approx(kl((0.75, 0.25)), abs=1e-7)
    glob = M.PopKL({**CFG, "morec_popkl_aggregate": "global"}).calculate_metric(_struct())["popkl@2"]
    assert glob == pytest.approx(kl((2 / 3, 1 / 3)), abs=1e-7)
    # one batch: both aggregations coincide (M10)
    same = _struct(batch_start=(0, 0, 0))
    assert M.PopKL(batch).calculate_metric(same)["popkl@2"] == pytest.approx(glob, abs=1e-7)


def _popkl_by_hand(lists, users, item_group, p_star, block=100):
    """UniRec's pop-kl written out: its test file in user order, batches of ``block`` users, each batch's share
    of top-k slots per group, the shares summed over batches and renormalised, KL(p* || q) with +1e-10."""
    order = sorted(range(len(users)), key=lambda r: users[r])
    n_groups = len(p_star)
    q_sum = [0.0] * n_groups
    for start in range(0, len(order), block):
        counts = [0] * n_groups
        for row in order[start:start + block]:
            for item in lists[row]:
                counts[item_group[item] - 1] += 1
        for g in range(n_groups):
            q_sum[g] += counts[g] / sum(counts)
    q = [v / sum(q_sum) for v in q_sum]
    return sum((p + 1e-10) * (math.log(p + 1e-10) - math.log(v + 1e-10)) for p, v in zip(p_star, q))


def _popkl_struct(lists, users, item_group, p_star, batch_start):
    s = DataStruct()
    s.set("rec.items", torch.as_tensor(lists))
    s.set("rec.users", torch.as_tensor(users))
    s.set("morec.item_align_group", torch.as_tensor([0] + list(item_group[1:])))
    s.set("morec.align_expected", torch.as_tensor([0.0] + list(p_star), dtype=torch.float64))
    s.set("morec.batch_start", torch.as_tensor(batch_start))
    return s


def test_popkl_blocks_of_100_users_equal_unirec_whatever_the_batches():
    """Default pop-kl: blocks of 100 users in user order (UniRec's test batches of 100), so the value does not
    depend on how RecBole cut the rows into evaluation batches; 'batch' (the old default) does."""
    rng = np.random.default_rng(0)
    n_rows, n_items, k = 250, 60, 5  # blocks of 100, 100 and 50 users
    item_group = [0] + list(rng.integers(1, 4, size=n_items - 1))  # 3 groups, PAD = 0
    popular = [i for i in range(1, n_items) if item_group[i] == 1]
    lists = [rng.choice(popular if r % 3 == 0 else np.arange(1, n_items), size=k, replace=False).tolist()
             for r in range(n_rows)]
    users = rng.permutation(np.arange(1, n_rows + 1)).tolist()  # rows not in user order
    p_star = [0.5, 0.3, 0.2]
    expected = _popkl_by_hand(lists, users, item_group, p_star)
    cfg = {**CFG, "topk": [k]}
    values = {}
    for rows_per_batch in (4, 64, 250):
        struct = _popkl_struct(lists, users, item_group, p_star, np.arange(n_rows) // rows_per_batch * rows_per_batch)
        values[rows_per_batch] = {
            agg: M.PopKL({**cfg, "morec_popkl_aggregate": agg}).calculate_metric(struct)[f"popkl@{k}"]
            for agg in ("block", "batch", "global")
        }
    for v in values.values():
        assert v["block"] == pytest.approx(expected, abs=1e-7)
    assert len({round(v["batch"], 6) for v in values.values()}) == 3  # the old default moved with the batches
    assert values[250]["batch"] == pytest.approx(values[250]["global"], abs=1e-7)
    # block size 50: another (hand-computed) value, still batch independent
    half = M.PopKL({**cfg, "morec_popkl_block_size": 50})
    assert half.calculate_metric(_popkl_struct(lists, users, item_group, p_star, [0] * n_rows))[f"popkl@{k}"] == (
        pytest.approx(_popkl_by_hand(lists, users, item_group, p_star, block=50), abs=1e-7))


@pytest.mark.parametrize("size", [0, 2.5, "100", True])
def test_popkl_block_size_must_be_positive_int(size):
    with pytest.raises(ConfigError, match="morec_popkl_block_size"):
        M.PopKL({**CFG, "morec_popkl_block_size": size})


def test_popkl_zero_when_lists_match_expected_and_smoothing():
    assert M.kl_expected_recommended([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.0, abs=1e-12)
    # a group never recommended: finite thanks to the +1e-10 smoothing (M11)
    assert M.kl_expected_recommended([0.5, 0.5], [1.0, 0.0]) == pytest.approx(
        (0.5 + 1e-10) * (math.log(0.5 + 1e-10) - math.log(1 + 1e-10)) + (0.5 + 1e-10) * (math.log(0.5 + 1e-10) - math.log(1e-10))
    )


def test_metric_names_registered_and_popkl_smaller():
    from recbole.evaluator.register import metric_types, smaller_metrics

    for name in ("rhit", "rndcg", "popkl", "minhit", "minndcg", "minrhit", "minrndcg"):
        assert name in metric_types
    assert "popkl" in smaller_metrics and "rhit" not in smaller_metrics


# ------------------------------------------------------------------------------------ signed SGD
def test_signed_sgd_alignment_worked_example():
    w = np.array([0, 0.5, 0.3, 0.2])
    s = alignment_signal([0, 0.4, 0.35, 0.25], [0, 0.6, 0.3, 0.1])
    assert s.tolist() == [0, 1, -1, -1]
    assert signed_sgd_update(w, s, 0.1) == pytest.approx([0, 0.6 / 0.9, 0.2 / 0.9, 0.1 / 0.9], abs=1e-9)
    assert signed_sgd_update(w, s, 0.1) == pytest.approx([0, 0.667, 0.222, 0.111], abs=1e-3)


def test_signed_sgd_fairness_worked_example():
    losses = np.array([-np.inf, 0.1, 0.4, 0.2])  # worst group 2
    s = fairness_signal(losses)
    assert s.tolist() == [0, 0, 1, 0]
    out = signed_sgd_update([0, 0.3, 0.2, 0.5], s, 0.1)
    assert out == pytest.approx([0, 0.3 / 1.1, 0.3 / 1.1, 0.5 / 1.1], abs=1e-9)
    assert out == pytest.approx([0, 0.273, 0.273, 0.455], abs=1e-3)


def test_signed_sgd_other_branches():
    # clip at 0 when decreasing below zero
    assert signed_sgd_update([0, 0.05, 0.95], [0, -1, 1], 0.1) == pytest.approx([0, 0, 1.0], abs=1e-9)
    # only decreases: element-wise min (fix of M2), several groups at once
    out = signed_sgd_update([0, 0.05, 0.5, 0.45], [0, -1, -1, 0], 0.1)
    assert out == pytest.approx(np.array([0, 0, 0.4, 0.45]) / 0.85, abs=1e-9)
    # no signal: unchanged (revenue)
    assert signed_sgd_update([0, 0.25, 0.75], [0, 0, 0], 0.1) == pytest.approx([0, 0.25, 0.75], abs=1e-9)
    # hit mode: argmin
    assert fairness_signal([np.inf, 0.3, 0.1, 0.2], higher_is_worse=False).tolist() == [0, 0, 1, 0]


# ----------------------------------------------------------------------------------- controller
def test_pi_controller_worked_example():
    pi = PIController(expect_loss=0.2, K_p=0.05, K_i=0.001, beta_min=0.1, beta_max=1.5)
    beta1 = pi.step(0.25)
    p = 0.05 / (1 + math.exp(0.2 - 0.25))
    assert p == pytest.approx(0.02562, abs=1e-5)
    assert pi.integral == 0.0  # skipped at step 1: previous beta 0 < beta_min (M8)
    assert beta1 == pytest.approx(0.1 + p, abs=1e-12) and beta1 == pytest.approx(0.1256, abs=1e-4)
    beta2 = pi.step(0.25)
    assert pi.integral == pytest.approx(5e-5, abs=1e-15)
    assert beta2 == pytest.approx(0.1 + p + 5e-5, abs=1e-12)


def test_pi_controller_clamps_and_freezes():
    pi = PIController(expect_loss=0.2, K_p=0.05, K_i=1.0, beta_min=0.1, beta_max=0.5, max_iter=3)
    betas = [pi.step(2.0) for _ in range(5)]
    assert max(betas) <= 0.5 and betas[2] == 0.5 and betas[3] == betas[4] == betas[2]
    # no anti-windup: the integral keeps the steps' sum
    assert pi.integral == pytest.approx(2 * 1.8)


def test_coordinators_combine():
    pid = build_coordinator("PID", ["fairness", "alignment"], "[0.3, 0.7]", lambda_=0.2, expect_loss=0.2,
                            K_p=0.05, K_i=0.001, beta_min=0.1, beta_max=1.5)
    lo = [torch.tensor(1.0), torch.tensor(2.0)]
    total = pid.combine(lo, torch.tensor(0.25))
    assert float(total) == pytest.approx(0.2 * (0.3 + 1.4) + pid.beta * 0.25)
    static = build_coordinator("Static", ["fairness", "alignment"], [0.1, 0.2, 0.7])
    assert float(static.combine(lo, torch.tensor(0.5))) == pytest.approx(0.1 + 0.4 + 0.35)
    one = build_coordinator("PID", ["revenue"], [0.2, 0.8])  # |O| = 1 -> c = [1.0]
    assert one.weights == [1.0]


def test_coordinator_bad_weights():
    with pytest.raises(ConfigError, match="needs 3"):
        build_coordinator("PID", ["fairness", "alignment", "revenue"], [0.5, 0.5])
    with pytest.raises(ConfigError, match="accuracy weight"):
        build_coordinator("Static", ["fairness", "alignment"], [0.5, 0.5])
    with pytest.raises(ConfigError, match="PID' or 'Static"):
        build_coordinator("MGDA", ["fairness"], [1.0])


# -------------------------------------------------------------------------------------- sampler
def test_group_counts_faithful_and_largest_remainder():
    w = np.array([0, 0.333, 0.333, 0.334])
    assert group_counts(w, 10).tolist() == [0, 3, 3, 4]  # remainder to the last group (M3)
    w = np.array([0, 0.46, 0.46, 0.08])
    assert group_counts(w, 10).tolist() == [0, 4, 4, 2]
    assert group_counts(w, 10, "largest_remainder").tolist() == [0, 5, 4, 1]


def test_sampler_batch_composition_matches_weights():
    rng = np.random.default_rng(0)
    item2group = np.array([0, 1, 1, 2, 2, 3, 3])
    train_items = rng.integers(1, 7, size=1000)
    weights = np.array([0, 0.5, 0.3, 0.2])
    sampler = MoRecSampler(train_items, {"fairness": item2group}, {"fairness": weights}, 0.1, batch_size=100)
    batches = sampler.epoch_batches()
    assert batches.shape == (10, 200)
    groups = item2group[train_items[batches[:, :100]]]
    for step in groups:
        assert np.bincount(step, minlength=4).tolist() == [0, 50, 30, 20]
    # accuracy part: one pass without replacement over all rows
    assert sorted(batches[:, 100:].flatten().tolist()) == list(range(1000))


def test_sampler_empty_group_draws_from_all_rows_and_update():
    item2group = np.array([0, 1, 1, 2])
    train_items = np.array([1, 2, 1, 2, 1, 2])  # group 2 has no training rows
    sampler = MoRecSampler(train_items, {"alignment": item2group}, {"alignment": np.array([0, 0.5, 0.5])}, 0.1, 4)
    idx = sampler.objective_indices("alignment", 3)
    assert idx.shape == (3, 4) and idx.min() >= 0 and idx.max() < 6
    sampler.update({"alignment": np.array([0, 1, -1])})
    assert sampler.weights["alignment"] == pytest.approx([0, 0.6, 0.4], abs=1e-9)


# --------------------------------------------------------------------------------- data helpers
def test_group_item_by_attr_faithful_and_plain():
    values = np.array([0.0, 9, 8, 7, 6, 5, 4, 3])  # N = 8 incl. PAD, G = 3: sizes 3,3,2
    groups, means = morec_data.group_item_by_attr(values, 3, faithful=False)
    assert groups.tolist() == [3, 1, 1, 1, 2, 2, 2, 3]
    groups, means = morec_data.group_item_by_attr(values, 3, faithful=True)
    # M6: sorted positions 1..(8 mod 3 = 2) move from bin 1 to bin 2
    assert groups.tolist() == [3, 1, 2, 2, 2, 2, 2, 3]
    assert means.tolist() == pytest.approx([0, 9, 6.0, 1.5])  # bin 2 = 8,7,6,5,4
    assert morec_data.popularity_align_groups([0, 1, 5, 3], 3, faithful=False).tolist() == [2, 1, 1]


def test_spec_m6_bin_sizes_example():
    groups, _ = morec_data.group_item_by_attr(np.arange(44848, dtype=float), 10)
    assert np.bincount(groups)[1:].tolist() == [4477, 4493] + [4485] * 6 + [4484] * 2


def test_convert_morec_csv(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.csv").write_text("user_id,item_id\n1,1\n1,2\n2,100\n2,1\n")
    (src / "valid.csv").write_text("user_id,item_id\n1,100\n2,2\n")
    (src / "test.csv").write_text("user_id,item_id\n1,2\n2,1\n")
    for name in ("example_item_meta_morec.csv", "example_expected_align_dist.csv"):
        (src / name).write_bytes(open(os.path.join(EXAMPLE, name), "rb").read())
    out = morec_data.convert_morec_csv(str(src), str(tmp_path / "out"), "tiny", meta_file="example_item_meta_morec.csv",
                                       align_dist_file="example_expected_align_dist.csv")
    item = open(os.path.join(out, "tiny.item")).read().splitlines()
    assert item[0] == "item_id:token\tprice:float\tfair_group:float\talign_group:float"
    assert item[1:] == ["1\t2.35\t1\t2", "2\t63.21\t5\t1", "100\t5.89\t5\t4"]
    assert open(os.path.join(out, "tiny.train.inter")).read().splitlines()[1] == "1\t1\t0"
    assert os.path.isfile(os.path.join(out, "tiny.align_dist.csv"))
    (src / "test.csv").write_text("user_id,item_id\n1,7\n")
    with pytest.raises(DatasetError, match=r"items \[7\]"):
        morec_data.convert_morec_csv(str(src), str(tmp_path / "out"), "tiny", meta_file="example_item_meta_morec.csv")


def test_meta_zero_based_groups_are_shifted(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("item_id,weight,fair_group,align_group\n0,0,0,0\n1,2.0,0,1\n2,3.0,2,2\n")
    meta = morec_data.read_morec_meta(str(path))
    assert meta["fair_group"].tolist() == [1, 3] and meta["align_group"].tolist() == [1, 2]
