"""CP calibrated re-ranking: hand-computed picks, λ = 0 = backbone order, λ → 1 lowers JSD, and the
vectorised greedy equals a per-user reference loop."""

import math

import pytest
import torch

import recbole_ext  # noqa: F401
from recbole_ext.errors import ConfigError
from recbole_ext.evaluator.metrics.calibration import jsd
from recbole_ext.evaluator.metrics.calibration import miscalibration_kl as steck_kl
from recbole_ext.trainer.cp import CPReranker, calibrated_rerank, cp_jsd

torch.set_num_threads(1)


def _reference_cp(rel, groups, target, n, lam):
    """Per-user loop exactly as in the spec (§8): maximise (1−λ)·Σ s − λ·JSD, strict '>' ties."""
    chosen = []
    for _ in range(n):
        best, best_j = -math.inf, None
        for j in range(len(rel)):
            if j in chosen:
                continue
            lst = chosen + [j]
            counts = torch.zeros(3, dtype=torch.float64)
            for c in lst:
                counts[groups[c]] += 1
            q = counts / len(lst)
            value = (1 - lam) * sum(float(rel[c]) for c in lst) - lam * float(cp_jsd(target.double(), q))
            if value > best:
                best, best_j = value, j
        chosen.append(best_j)
    return chosen


def test_cp_jsd_hand_computed():
    assert float(cp_jsd(torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0, 1.0, 0], dtype=torch.float64))) == pytest.approx(1.0)
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    assert float(cp_jsd(p, p)) == pytest.approx(0.0, abs=1e-9)
    assert float(steck_kl(torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), 0.01)) == pytest.approx(math.log(100))


def test_cp_hand_computed_single_pick():
    # user wants only LowPop; candidates: HighPop (1.0), HighPop (0.9), LowPop (0.1)
    rel = torch.tensor([[1.0, 0.9, 0.1]])
    groups = torch.tensor([[0, 0, 2]])
    target = torch.tensor([[0.0, 0.0, 1.0]])
    # λ = 0.5: U(j0) = .5·1 − .5·JSD([0,0,1],[1,0,0]) = .5 − .5 = 0; U(j2) = .5·.1 − 0 = .05
    assert calibrated_rerank(rel, groups, target, 1, 0.5).tolist() == [[2]]
    # λ = 0.02: U(j0) = .98 − .02 = .96 > U(j2) = .098
    assert calibrated_rerank(rel, groups, target, 1, 0.02).tolist() == [[0]]


def test_cp_lambda_zero_is_backbone_order():
    gen = torch.Generator().manual_seed(0)
    rel = torch.rand(64, 50, generator=gen).sort(dim=1, descending=True).values
    groups = torch.randint(0, 3, (64, 50), generator=gen)
    target = torch.distributions.Dirichlet(torch.ones(3)).sample((64,))
    picks = calibrated_rerank(rel, groups, target, 10, 0.0)
    assert torch.equal(picks, torch.arange(10).expand(64, 10))


def test_cp_higher_lambda_lowers_jsd_and_matches_reference_loop():
    gen = torch.Generator().manual_seed(1)
    n_users, m, n = 40, 30, 10
    rel = torch.rand(n_users, m, generator=gen).sort(dim=1, descending=True).values
    groups = torch.multinomial(torch.tensor([0.6, 0.3, 0.1]), n_users * m, replacement=True, generator=gen).view(n_users, m)
    target = torch.distributions.Dirichlet(torch.ones(3)).sample((n_users,))
    mean_jsd = []
    for lam in (0.0, 0.3, 0.6, 0.99):
        picks = calibrated_rerank(rel, groups, target, n, lam)
        shares = torch.nn.functional.one_hot(torch.gather(groups, 1, picks), 3).double().mean(1)
        mean_jsd.append(float(jsd(target, shares).mean()))
        if lam in (0.3, 0.99):
            for u in range(0, n_users, 7):
                assert picks[u].tolist() == _reference_cp(rel[u], groups[u], target[u], n, lam)
    assert mean_jsd[-1] < mean_jsd[0]
    assert all(b <= a + 1e-12 for a, b in zip(mean_jsd, mean_jsd[1:]))


def test_cp_ignores_non_candidates():
    rel = torch.tensor([[0.9, 0.5, float("-inf"), float("-inf")]])
    groups = torch.tensor([[0, 0, 2, 2]])
    target = torch.tensor([[0.0, 0.0, 1.0]])
    assert calibrated_rerank(rel, groups, target, 2, 1.0).tolist() == [[0, 1]]


def test_cp_bad_input():
    base = {"topk": [10], "cp_lambda": 0.5, "cp_candidates": 100, "USER_ID_FIELD": "user_id"}  # rest: cp.yaml
    CPReranker(base)
    with pytest.raises(ConfigError, match="cp_lambda"):
        CPReranker(dict(base, cp_lambda=1.5))
    with pytest.raises(ConfigError, match="cp_candidates"):
        CPReranker(dict(base, cp_candidates=5))
    with pytest.raises(ConfigError, match="cp_divergence"):
        CPReranker(dict(base, cp_divergence="l2"))
