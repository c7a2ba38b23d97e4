"""MoRec's validation signals, read with the current model before every epoch (spec §3.2).

Fairness: per fair group, the summed per-row loss over its validation rows (or its hit@10); the signal
is one-hot on the worst group. Alignment: the share q of each alignment group among the top-K items of
every validation user; the signal is sign(p* - q). Revenue has no signal.
"""

import numpy as np
import torch

from recbole_ext import distributed


def alignment_signal(q, p_star):
    """-1 where a group is over-represented in the top-K lists (q > p*), +1 where under-represented."""
    q = np.asarray(q, dtype=float)
    p = np.asarray(p_star, dtype=float)
    return np.sign(p - q).astype(int)


def fairness_signal(group_scores, higher_is_worse=True):
    """One-hot on the single worst group (spec §3.2b). ``group_scores`` has -inf (loss) / +inf (hit)
    on padding and empty groups already. Loss mode: argmax; hit mode: argmin."""
    scores = np.asarray(group_scores, dtype=float)
    signal = np.zeros(len(scores), dtype=int)
    signal[int(np.argmax(scores) if higher_is_worse else np.argmin(scores))] = 1
    return signal


def fairness_losses(row_losses, valid_items, groups, chunk, per_group, progress=None):
    """Per fair group: summed per-row loss over its validation rows / |V| (quirk M1) or / |V_g|
    (``per_group``); -inf on padding and groups without validation rows. ``row_losses(index)``: the
    losses of the validation rows ``index``, computed ``chunk`` rows at a time (``progress``: wraps the
    chunk starts, e.g. in a progress bar)."""
    n_groups = int(groups.max()) + 1
    sums = torch.zeros(n_groups, dtype=torch.float64)
    n_valid = len(valid_items)
    with torch.no_grad():
        starts = range(0, n_valid, chunk)
        for start in (progress(starts) if progress is not None else starts):
            index = torch.arange(start, min(start + chunk, n_valid))
            sums.index_add_(0, groups[valid_items[index].long()], row_losses(index).double().cpu())
    counts = torch.bincount(groups[valid_items.long()], minlength=n_groups).double()
    scores = sums / (counts if per_group else n_valid)
    scores[counts == 0] = -torch.inf
    scores[0] = -torch.inf
    return scores.numpy()


def group_hit_rates(hits, items, groups):
    """Per fair group: the mean hit@10 of its validation positives; +inf on padding and empty groups."""
    g = groups[items]
    n_groups = int(groups.max()) + 1
    sums = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, g, hits)
    counts = torch.bincount(g, minlength=n_groups).double()
    scores = (sums / counts.clamp(min=1)).numpy()
    scores[(counts == 0).numpy()] = np.inf
    scores[0] = np.inf  # padding masked
    return scores


def topk_pass(trainer, valid_data, k, align_groups, with_hits, show_progress=False):
    """Alignment-group shares q of the top-``k`` items of every validation row and, ``with_hits``, the
    (hit@10, item) of every validation positive; multi-process: over the rows of all processes."""
    n_align = int(align_groups.max()) + 1 if align_groups is not None else 1
    align_counts = torch.zeros(n_align, dtype=torch.float64)
    hit_items, hits = [], []
    # this process scores its shard; rows past n_real are the DistributedSampler's padding (repeats)
    n_real = distributed.real_row_count(getattr(valid_data, "sampler", None)) if trainer.distributed else None
    rows = 0
    with torch.no_grad():
        batches = valid_data
        if show_progress and hasattr(trainer, "progress"):
            batches = trainer.progress(valid_data, "MoRec signals", True, total=len(valid_data))
        for batched in batches:
            _, scores, positive_u, positive_i = trainer._full_sort_batch_eval(batched)
            top = torch.topk(scores, k, dim=1).indices.cpu()
            positive_u, positive_i = positive_u.cpu(), positive_i.cpu()
            if n_real is not None:
                keep = max(0, min(top.shape[0], n_real - rows))
                rows += top.shape[0]
                top, mask = top[:keep], positive_u < keep
                positive_u, positive_i = positive_u[mask], positive_i[mask]
            if align_groups is not None:
                align_counts += torch.bincount(align_groups[top].flatten(), minlength=n_align).double()
            if with_hits:
                hits.append((top[:, :10][positive_u] == positive_i.unsqueeze(1)).any(dim=1))
                hit_items.append(positive_i)
    if trainer.distributed:
        parts = distributed.gather_objects((align_counts, hits, hit_items))
        align_counts = sum(part[0] for part in parts)  # counts: exact in float64 in any order
        hits = [h for part in parts for h in part[1]]
        hit_items = [i for part in parts for i in part[2]]
    q = (align_counts / align_counts.sum()).numpy()
    hit = (torch.cat(hits).double(), torch.cat(hit_items)) if hits else None
    return q, hit
