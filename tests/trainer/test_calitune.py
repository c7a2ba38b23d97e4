"""CaliTune losses on small tensors (hand-computed) and the trainer's bad-input errors."""

import math

import pytest
import torch

import recbole_ext  # noqa: F401
from recbole_ext.trainer.calitune import calibration_loss, calitune_loss, group_distribution, listwise_loss

torch.set_num_threads(1)
EPS = 1e-10


def test_listwise_loss_hand_computed():
    scores = torch.tensor([[0.0, math.log(2.0)]])
    labels = torch.tensor([[1.0, 0.0]])
    t = [math.e / (math.e + 1), 1 / (math.e + 1)]
    p = [1 / 3, 2 / 3]
    expected = sum(ti * math.log(ti / pi) for ti, pi in zip(t, p))
    assert float(listwise_loss(scores, labels)) == pytest.approx(expected, rel=1e-6)


def test_listwise_loss_batchmean_and_no_positive_is_uniform_target():
    scores = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    p = torch.softmax(scores[0], 0)
    first = float((1 / 3 * torch.log((1 / 3) / p)).sum())
    t = torch.softmax(labels[1], 0)
    second = float((t * torch.log(t / (1 / 3))).sum())
    assert float(listwise_loss(scores, labels)) == pytest.approx((first + second) / 2, rel=1e-6)


def test_calibration_loss_hand_computed():
    scores = torch.tensor([[3.0, 1.0, 2.0]], requires_grad=True)
    onehot = torch.eye(3).unsqueeze(0)  # candidate j is in group j
    target = torch.tensor([[0.6, 0.2, 0.2]])
    # min-max weights (1, 0, .5) -> Q = (2/3, 0, 1/3)
    q = group_distribution(scores, onehot)
    assert q.detach()[0].tolist() == pytest.approx([2 / 3, 0.0, 1 / 3])
    expected = sum((pv + EPS) * (math.log(pv + EPS) - math.log(qv + EPS)) for pv, qv in zip([0.6, 0.2, 0.2], [2 / 3, 0, 1 / 3]))
    loss = calibration_loss(scores, onehot, target)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(scores.grad).all() and scores.grad.abs().sum() > 0


def test_group_distribution_degenerate_equal_scores():
    q = group_distribution(torch.zeros(1, 4), torch.eye(3)[[0, 0, 1, 2]].unsqueeze(0))
    assert q[0].tolist() == pytest.approx([0.5, 0.25, 0.25])


def test_total_loss_lambda_extremes():
    scores = torch.tensor([[0.3, -1.0, 2.0, 0.5]])
    labels = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    onehot = torch.eye(3)[[0, 1, 2, 2]].unsqueeze(0)
    target = torch.tensor([[0.2, 0.3, 0.5]])
    la = listwise_loss(scores, labels)
    lc = calibration_loss(scores, onehot, target)
    assert float(calitune_loss(la, scores, onehot, target, 0.0)) == pytest.approx(float(la))
    assert float(calitune_loss(la, scores, onehot, target, 1.0)) == pytest.approx(float(lc))
    assert float(calitune_loss(la, scores, onehot, target, 0.25)) == pytest.approx(0.75 * float(la) + 0.25 * float(lc))


def test_select_by_valid_jsd_target_worked_example():
    from recbole_ext.trainer.calitune.trainer import select_by_valid_jsd_target

    history = [(1, 0.30, 0.20), (2, 0.29, 0.12), (3, 0.31, 0.15), (4, 0.27, 0.10), (5, 0.28, 0.09), (6, 0.28, 0.11)]
    # JSD <= 0.12 holds for epochs 2, 4, 5, 6; the best NDCG among them is epoch 2's 0.29
    assert select_by_valid_jsd_target(history, 0.12) == 2
    # the bound is inclusive, and the higher-NDCG epoch 3 only enters once its JSD qualifies
    assert select_by_valid_jsd_target(history, 0.15) == 3
    # epochs 4, 5, 6 qualify; 5 and 6 tie on NDCG 0.28: the earlier epoch is kept
    assert select_by_valid_jsd_target(history, 0.11) == 5
    assert select_by_valid_jsd_target(history, 1.0) == 3


def test_select_by_valid_jsd_target_none_qualifies():
    from recbole_ext.trainer.calitune.trainer import select_by_valid_jsd_target

    assert select_by_valid_jsd_target([(1, 0.3, 0.2), (2, 0.2, 0.15)], 0.1) is None
    assert select_by_valid_jsd_target([], 0.5) is None
