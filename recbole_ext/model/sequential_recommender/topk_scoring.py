"""Full-sort scoring of the multi-interest models: max over interests, the input-window value, the trainer's
exclusions, and a certified two-stage top-k scorer (bf16 candidates, exact fp32 re-scoring, fp32 fallback for
any row whose top-k cannot be certified). Pure functions of tensors; the model owns the table and its bf16 copy.

``exclude`` arguments are ``(rows, items)`` index pairs (or ``None``) that the trainer sets to -inf.
"""

import torch

HISTORY_MASKS = ("window_zero", "window_neg_inf", "none")
# bound on |bf16 score - exact score| / (max_k ||m_k|| * max_n ||e_n||): input rounding of both factors
# (2u + u^2), fp32 accumulation, output rounding to bf16 (u), with u = 2^-8; 4u leaves a safety margin
_BF16_REL_BOUND = 4.0 * 2.0**-8


def native_bf16(device):
    """True where bf16 matrix products run natively (CPU: AVX512-BF16 or AMX; CUDA: bf16 support), so that
    ``eval_scoring: auto`` picks the two-stage scorer; its top-k lists equal the fp32 path's either way."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return device.type == "cpu" and any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def max_scores(interests, weight, chunk_bytes=4 << 20):
    """``max_k interests[:, k] . weight[n]`` as ``[B, N]`` (dtype of ``weight``): one flat GEMM
    ``[B*K, d] x [d, n]`` per chunk of items into a reused buffer, then max over K. Chunks of a few MB keep
    the GEMM output in cache for the max (32 MB chunks measured 3x slower in bf16, 2x in fp32)."""
    b, k, d = interests.shape
    n = weight.shape[0]
    flat = interests.reshape(b * k, d).to(weight.dtype)
    out = weight.new_empty((b, n))
    step = max(256, min(n, chunk_bytes // max(1, b * k * weight.element_size())))
    if torch.is_grad_enabled() and (weight.requires_grad or interests.requires_grad):  # out= has no autograd
        return (flat @ weight.t()).view(b, k, n).amax(dim=1)
    buf = weight.new_empty((b * k, min(step, n)))
    for start in range(0, n, step):  # a few chunks (catalogue / step), not a loop over items
        stop = min(n, start + step)
        part = torch.mm(flat, weight[start:stop].t(), out=buf[:, : stop - start]).view(b, k, stop - start)
        dest = out[:, start:stop]
        if k == 1:
            dest.copy_(part[:, 0])
            continue
        # pairwise running max over the K interests (much faster than a strided amax over dim 1)
        torch.maximum(part[:, 0], part[:, 1], out=dest)
        for i in range(2, k):
            torch.maximum(dest, part[:, i], out=dest)
    return out


def mask_window(scores, item_seq, history_mask):
    """Quirk Q6: items of the input window (and PAD if padded) get 0 (``window_zero``, faithful) or -inf."""
    if history_mask != "none":
        # index_put_ rather than scatter_: scatter_ of a scalar into bf16 takes a slow copying path
        value = torch.tensor(0.0 if history_mask == "window_zero" else float("-inf"), dtype=scores.dtype)
        rows = torch.arange(scores.shape[0], device=scores.device).unsqueeze(1).expand_as(item_seq)
        scores.index_put_((rows, item_seq), value.to(scores.device))
    return scores


def mask_excluded(scores, exclude):
    """PAD and the ``exclude`` pairs -> -inf (RecBole's trainer masks them the same way)."""
    scores[:, 0] = float("-inf")
    if exclude is not None and exclude[0].numel():
        scores[exclude] = float("-inf")
    return scores


def masked_exact_scores(interests, weight, item_seq, history_mask, exclude):
    """Exact fp32 scores with the window value, PAD and ``exclude`` applied, as the trainer masks."""
    return mask_excluded(mask_window(max_scores(interests, weight), item_seq, history_mask), exclude)


def bf16_table(weight):
    """The bf16 copy of an item table and its largest row norm (the inputs of :func:`bf16_rescore`)."""
    return weight.detach().to(torch.bfloat16), weight.detach().norm(dim=1).max()


def bf16_rescore(interests, weight, weight_bf16, max_item_norm, item_seq, history_mask, exclude, k, margin):
    """Two-stage scorer: candidates ``[B, C]`` (item ids, ascending), their exact fp32 scores and the number
    of fallback rows, such that each row's exact top-``k`` (after the window value, PAD and ``exclude``) is
    among its candidates (certified per row; excluded candidates score -inf).

    1. bf16 scores of every item (max over interests), window value, PAD and ``exclude`` applied; the
       ``C = k + margin`` best are candidates.
    2. Exact fp32 scores of the candidates (same masking).
    3. Certificate: a non-candidate's bf16 score is <= t (the C-th bf16 score), hence its exact
       score is <= t + delta with delta = 4 * 2^-8 * max_k ||m_k|| * max_n ||e_n||. A row whose
       ``k``-th exact candidate score exceeds t + delta has its exact top-k among the candidates;
       the other rows get every item as a candidate (exact fp32 path).
    """
    b, n = interests.shape[0], weight.shape[0]
    k = min(k, n)
    c = min(n, k + margin)
    neg_inf = float("-inf")
    approx = mask_excluded(mask_window(max_scores(interests, weight_bf16), item_seq, history_mask), exclude)
    approx_top, cand = torch.topk(approx, c, dim=1)  # [B, C]
    del approx
    # candidates in item order: ties then resolve as a top-k over the whole row would
    cand, order = cand.sort(dim=1)
    approx_top_c = approx_top.gather(1, order)
    exact = torch.einsum("bkd,bcd->bkc", interests, weight[cand]).amax(dim=1)  # [B, C] fp32
    if history_mask != "none":
        value = 0.0 if history_mask == "window_zero" else neg_inf
        in_window = (cand.unsqueeze(2) == item_seq.unsqueeze(1)).any(dim=2)
        exact = exact.masked_fill(in_window, value)
    exact = exact.masked_fill(torch.isneginf(approx_top_c), neg_inf)  # PAD / excluded stay excluded
    delta = _BF16_REL_BOUND * interests.norm(dim=2).amax(dim=1) * max_item_norm  # [B]
    threshold = approx_top[:, -1].float() + delta
    kth = torch.topk(exact, k, dim=1).values[:, -1]
    certified = (kth > threshold) | (c >= n)
    fallback = (~certified).nonzero(as_tuple=True)[0]
    if not fallback.numel():
        return cand, exact, 0
    # rare: every item becomes a candidate of these rows (exact fp32 scores)
    cand_full = torch.arange(n, device=cand.device).repeat(b, 1)
    exact_full = exact.new_full((b, n), neg_inf)
    cand_full[certified, :c], cand_full[certified, c:] = cand[certified], 0  # PAD at -inf pads the rest
    exact_full[certified, :c] = exact[certified]
    exact_full[fallback] = masked_exact_scores(
        interests[fallback], weight, item_seq[fallback], history_mask, rows_of(exclude, fallback)
    )
    return cand_full, exact_full, int(fallback.numel())


def rows_in(exclude, start, stop):
    """The ``exclude`` pairs of rows ``start <= r < stop``, rows renumbered from 0."""
    if exclude is None:
        return None
    rows, items = exclude
    keep = (rows >= start) & (rows < stop)
    return rows[keep] - start, items[keep]


def rows_of(exclude, selected):
    """The ``exclude`` pairs of the rows ``selected`` (sorted), rows renumbered by position in ``selected``."""
    if exclude is None:
        return None
    rows, items = exclude
    keep = torch.isin(rows, selected)
    return torch.searchsorted(selected, rows[keep]), items[keep]
