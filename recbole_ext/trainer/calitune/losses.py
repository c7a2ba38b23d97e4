"""CaliTune's losses (spec §5.2, §5.3) and the validation NDCG, as pure tensor functions."""

import torch
import torch.nn.functional as F


def listwise_loss(scores, labels):
    """KL(softmax(labels) ‖ softmax(scores)) over the candidates, summed / batch size."""
    target = torch.softmax(labels.to(scores.dtype), dim=1)
    return F.kl_div(F.log_softmax(scores, dim=1), target, reduction="batchmean")


def group_distribution(scores, cand_onehot):
    """Q_u: min–max normalised candidate scores summed per group, normalised to 1.

    No ε in the min–max denominator (quirk C4); only the degenerate all-equal case is guarded
    (every candidate then weighs 1)."""
    low = scores.min(dim=1, keepdim=True).values
    high = scores.max(dim=1, keepdim=True).values
    span = high - low
    flat = span <= 0
    weights = (scores - low) / torch.where(flat, torch.ones_like(span), span)
    weights = torch.where(flat, torch.ones_like(weights), weights)
    mass = (weights.unsqueeze(-1) * cand_onehot).sum(dim=1)
    return mass / mass.sum(dim=1, keepdim=True).clamp_min(1e-30)


def calibration_loss(scores, cand_onehot, targets):
    """KL(P_u ‖ Q_u) with ε = 1e-10 on both sides (PyTorch KLDivLoss, batchmean)."""
    q = group_distribution(scores, cand_onehot)
    return F.kl_div(torch.log(q + 1e-10), targets + 1e-10, reduction="batchmean")


def calitune_loss(accuracy, scores, cand_onehot, targets, lam, parts=None):
    """(1 − λ)·accuracy + λ·calibration; λ = 0 skips the calibration term, λ = 1 the accuracy term.
    ``parts`` (a dict), when given, receives the unweighted terms computed (``accuracy``, ``calibration``) as floats."""
    total = scores.new_zeros(())
    if lam < 1.0:
        total = total + (1.0 - lam) * accuracy
        if parts is not None:
            parts["accuracy"] = float(accuracy.detach())
    if lam > 0.0:
        calibration = calibration_loss(scores, cand_onehot, targets)
        total = total + lam * calibration
        if parts is not None:
            parts["calibration"] = float(calibration.detach())
    return total


def ndcg_at_k(top_items, relevant_dense, k):
    """Binary NDCG@k per user and whether the user has a relevant item; ``relevant_dense`` is a
    ``[b, n_items]`` bool matrix."""
    hits = torch.gather(relevant_dense, 1, top_items[:, :k]).double()
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    dcg = (hits * discount).sum(1)
    n_rel = relevant_dense.sum(1).clamp(max=k)
    idcg = torch.cumsum(discount, 0)[(n_rel - 1).clamp_min(0)]
    return torch.where(n_rel > 0, dcg / idcg, torch.zeros_like(dcg)), n_rel > 0
