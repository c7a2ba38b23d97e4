"""MoRec's per-row (unreduced) losses, computed from the model's scores: RecBole models return reduced
losses. ``bpr`` (UniRec: mean over negatives of -log(σ(s_ui - s_uj) + 1e-8)) and ``bce`` (mean BCE over
1 + n_neg items) score sampled negatives through ``model.predict``; ``ce`` is the softmax cross-entropy
over all items through ``model.full_sort_predict``. The model's own regularisers are not added."""

import torch
import torch.nn.functional as F


def sample_negatives(users, positives, n_neg, n_items, history_keys, generator, probs=None):
    """[n, n_neg] negatives: uniform over items 1.. (or drawn ∝ ``probs``), never in the user's history
    (``history_keys``: sorted user * n_items + item) nor the row's positive."""
    n = users.shape[0]
    users = users.long().unsqueeze(1).expand(n, n_neg).reshape(-1)
    positives = positives.long().unsqueeze(1).expand(n, n_neg).reshape(-1)

    def draw(size):
        if probs is None:
            return torch.randint(1, n_items, (size,), generator=generator)
        return torch.multinomial(probs, size, replacement=True, generator=generator)

    negs = draw(n * n_neg)
    todo = torch.arange(n * n_neg)
    for _ in range(100):  # retries over rejected draws (vectorised), as UniRec
        keys = users[todo] * n_items + negs[todo]
        pos = torch.searchsorted(history_keys, keys).clamp(max=len(history_keys) - 1)
        bad = (history_keys[pos] == keys) | (negs[todo] == positives[todo])
        todo = todo[bad]
        if len(todo) == 0:
            break
        negs[todo] = draw(len(todo))
    if len(todo):
        negs[todo] = 0  # UniRec falls back to the padding item
    return negs.view(n, n_neg)


def row_losses(model, interaction, kind, iid_field, negatives=None):
    """Loss of every row of ``interaction`` (one positive per row); ``negatives`` [n, n_neg] for bpr / bce."""
    if kind == "ce":
        scores = model.full_sort_predict(interaction).view(len(interaction), -1)
        scores[:, 0] = -torch.inf
        return F.cross_entropy(scores, interaction[iid_field].long(), reduction="none")
    n, n_neg = negatives.shape
    pos_scores = model.predict(interaction)
    neg_inter = interaction.repeat(n_neg)
    neg_inter.interaction[iid_field] = negatives.t().reshape(-1)
    neg_scores = model.predict(neg_inter).view(n_neg, n).t()
    if kind == "bpr":
        return -torch.log(torch.sigmoid(pos_scores.unsqueeze(1) - neg_scores) + 1e-8).mean(dim=1)
    bce = torch.cat([F.softplus(-pos_scores).unsqueeze(1), F.softplus(neg_scores)], dim=1)
    return bce.mean(dim=1)
