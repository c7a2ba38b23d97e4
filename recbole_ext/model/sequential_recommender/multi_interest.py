"""Shared base of the multi-interest models MIND, ComiRec-SA and REMI, with the BaM training scheme.

BaM: Jaeri Lee, Jeongin Yun, U Kang, "Towards True Multi-interest Recommendation: Enhanced Scheme for
Balanced Interest Training", IEEE BigData 2024 (code: snudatalab/BaM). Spec: ``shared/specs/bam.md``.

A backbone implements :meth:`MultiInterestRecommender.extract_interests` (history -> ``[B, K, d]``
interests, plus the ``[B, K, L]`` attention for REMI's routing regularisation). This base adds

* interest selection for the training target: ``hard`` (argmax), ``p`` (BaM_p: sample from
  softmax(T * m_k . e+)) and ``l`` (BaM_l: sample from softmax(T * (W_a m_k + b_a) . (W_b e+ + b_b)));
* the sampled-softmax loss over [positive, ``sampled_n`` uniform negatives] with REMI's
  interest-aware hard-negative reweighting (``rbeta``), computed only on the gathered logits;
* BaM's multi-interest loss L_m (logits = logsumexp over interests) on the same negatives;
* ``full_sort_predict`` / ``predict`` / ``full_sort_topk``: max over interests, through
  :mod:`~recbole_ext.model.sequential_recommender.topk_scoring` (``eval_scoring: bf16_rescore``: its
  certified two-stage scorer);
* the routing-share diagnostic (which interest each training target was routed to).

Everything is vectorised over the batch: negatives for every row are drawn in one call.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender

from recbole_ext import options
from recbole_ext.data.bam_loader import BaMTrainDataLoader
from recbole_ext.errors import ConfigError
from recbole_ext.model.sequential_recommender.topk_scoring import (
    HISTORY_MASKS,
    bf16_rescore,
    bf16_table,
    mask_window,
    masked_exact_scores,
    max_scores,
    native_bf16,
    rows_in,
)

CHOICES = {
    "selection": ("hard", "p", "l"),
    "neg_sample_mode": ("batch", "row"),
    "history_mask": HISTORY_MASKS,
    "eval_scoring": ("auto", "fp32", "bf16_rescore"),
    "l_grad": ("none", "straight_through"),
}


def sampled_softmax_loss(pos_logits, neg_logits, rbeta=0.0):
    """Per-row loss of the sampled softmax over ``[positive, negatives]``.

    ``pos_logits``: ``[B]``; ``neg_logits``: ``[B, n]``. With ``rbeta == 0`` this is exactly
    cross-entropy with the positive as class 0. With ``rbeta > 0`` (REMI's interest-aware hard
    negatives), negative j gets weight ``w_j = exp(beta x_j - max beta x) / mean_j(...)`` (mean 1 over
    the row's negatives; x = logits minus the row max), and the loss is
    ``-x+ + log(exp(x+) + sum_j w_j exp(x_j))``. The weights are not detached (as in the original).
    The uniform log-q correction of the original is a constant and cancels, so it is omitted.
    """
    if rbeta:
        log_w = reweight_log_weights(pos_logits, neg_logits, rbeta)
        neg_logits = neg_logits + log_w
    logits = torch.cat([pos_logits.unsqueeze(1), neg_logits], dim=1)
    return torch.logsumexp(logits, dim=1) - pos_logits


def reweight_log_weights(pos_logits, neg_logits, rbeta):
    """log of REMI's hard-negative weights ``w`` (``[B, n]``; ``w.exp().mean(1) == 1``)."""
    row_max = torch.maximum(pos_logits, neg_logits.max(dim=1).values).unsqueeze(1)
    x = rbeta * (neg_logits - row_max)
    x = x - x.max(dim=1, keepdim=True).values
    return x - (torch.logsumexp(x, dim=1, keepdim=True) - math.log(x.shape[1]))


def interest_logits(interests, item_emb, shared=False):
    """``m_k . e`` for every interest: ``interests`` ``[B, K, d]``; ``item_emb`` ``[B, d]`` (one item per row)
    -> ``[B, K]``, ``[B, n, d]`` (n items per row) or, with ``shared=True``, ``[n, d]`` (the same items for
    every row: one GEMM) -> ``[B, K, n]``."""
    if shared:
        b, k, d = interests.shape
        return (interests.reshape(b * k, d) @ item_emb.t()).view(b, k, -1)
    if item_emb.dim() == 2:
        return torch.einsum("bkd,bd->bk", interests, item_emb)
    return torch.einsum("bkd,bnd->bkn", interests, item_emb)


def multi_interest_scores(interests, item_emb, shared=False):
    """BaM's multi-interest score ``log sum_k exp(m_k . e)`` (paper Eq. 10/11): ``[B]`` or ``[B, n]``."""
    return torch.logsumexp(interest_logits(interests, item_emb, shared), dim=1)


class MultiInterestRecommender(SequentialRecommender):
    """Base of the multi-interest models trained with BaM (Lee, Yun, Kang, "Towards True Multi-interest
    Recommendation: Enhanced Scheme for Balanced Interest Training", IEEE BigData 2024): embeddings,
    selection, sampled-softmax + multi-interest loss, max-over-interest scoring."""

    trainer_name = "BaM"
    train_loader = BaMTrainDataLoader  # train_sampler: user (original) | interaction (RecBole's)
    defaults_from = ("MultiInterest",)  # properties/model/MultiInterest.yaml, below the model's own file

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        choices = options.check_choices(config, CHOICES, type(self).__name__)
        self.selection, self.neg_sample_mode = choices["selection"], choices["neg_sample_mode"]
        self.history_mask, self.eval_scoring, self.l_grad = choices["history_mask"], choices["eval_scoring"], choices["l_grad"]
        self.embedding_size = int(config["embedding_size"])
        self.interest_num = int(config["interest_num"])
        self.sampled_n = int(config["sampled_n"])
        self.T = float(config["T"])
        self.linear_size = int(config["linear_size"])
        self.multi_loss = bool(config["multi_loss"])
        self.rbeta = float(config["rbeta"])
        self.rlambda = float(config["rlambda"])
        self.rr_hard_only = bool(config["rr_hard_only"])
        self.neg_exclude_pad = bool(config["neg_exclude_pad"])
        self.eval_topk = max(config["topk"])  # the top-k the rescorer must certify
        self.rescore_margin = int(config["rescore_margin"])
        self.eval_exclude = None  # (rows, items) that the trainer will set to -inf (BaMTrainer sets it)
        self.eval_block_size = int(config["eval_block_size"])  # users per block in full_sort_topk
        self.rescore_stats = {"rows": 0, "fallback_rows": 0}
        self._check_config()
        # auto: the top-k path (full_sort_topk) uses the two-stage scorer where bf16 is native;
        # full_sort_predict keeps returning exact fp32 scores for every item
        self.auto_scoring = "bf16_rescore" if native_bf16(config["device"]) else "fp32"

        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0)
        if self.selection == "l":
            self.l1 = nn.Linear(self.embedding_size, self.linear_size)  # W_a, b_a (interests)
            self.l2 = nn.Linear(self.embedding_size, self.linear_size)  # W_b, b_b (target item)
        # routing-share diagnostic: per interest, #targets selected and #targets whose argmax it is
        self.register_buffer("route_selected", torch.zeros(self.interest_num), persistent=False)
        self.register_buffer("route_argmax", torch.zeros(self.interest_num), persistent=False)
        self._weight_bf16 = None  # (weight, version, bf16 copy, max row norm) for eval_scoring bf16_rescore

    # ------------------------------------------------------------------------------------------
    def _check_config(self):
        name = type(self).__name__
        if self.interest_num < 1:
            raise ConfigError(f"{name}: interest_num must be >= 1, got {self.interest_num}; set --interest_num=4")
        if self.embedding_size < 1:
            raise ConfigError(f"{name}: embedding_size must be >= 1, got {self.embedding_size}")
        if not (self.T > 0) or math.isinf(self.T):
            raise ConfigError(f"{name}: T must be a finite number > 0 (selection temperature), got {self.T}")
        if self.selection == "l" and not (1 <= self.linear_size < self.embedding_size):
            raise ConfigError(
                f"{name}: linear_size must be in [1, embedding_size) = [1, {self.embedding_size}) for "
                f"selection 'l', got {self.linear_size}; BaM's default is 16"
            )
        pool = self.n_items - (1 if self.neg_exclude_pad else 0)
        if self.sampled_n < 1 or self.sampled_n > pool:
            raise ConfigError(
                f"{name}: sampled_n = {self.sampled_n} negatives cannot be drawn without replacement from "
                f"{pool} item ids (n_items = {self.n_items}{', PAD excluded' if self.neg_exclude_pad else ''}); "
                f"set --sampled_n to at most {pool}"
            )
        if self.eval_block_size < 1:
            raise ConfigError(f"{name}: eval_block_size must be >= 1, got {self.eval_block_size}")
        if self.rescore_margin < 0:
            raise ConfigError(f"{name}: rescore_margin must be >= 0, got {self.rescore_margin}")
        if self.rbeta < 0 or self.rlambda < 0:
            raise ConfigError(f"{name}: rbeta and rlambda must be >= 0, got {self.rbeta} / {self.rlambda}")

    def reset_parameters(self):
        """The original init: Kaiming-normal (fan_in, gain sqrt 2) for >= 2-D parameters, zero biases.
        Faithful quirk Q1: the PAD embedding row becomes non-zero too (it never enters the input)."""
        for weight in self.parameters():
            if weight.dim() >= 2:
                nn.init.kaiming_normal_(weight)
            else:
                nn.init.zeros_(weight)

    # ------------------------------------------------------------------------------------------
    def extract_interests(self, item_seq, item_seq_len):
        """Return ``(interests [B, K, d], attention [B, K, L] or None)``; implemented by the backbone."""
        raise NotImplementedError

    def forward(self, item_seq, item_seq_len):
        return self.extract_interests(item_seq, item_seq_len)[0]

    @property
    def effective_rlambda(self):
        if self.rr_hard_only and self.selection != "hard":
            return 0.0
        return self.rlambda

    # ------------------------------------------------------------------------------------------
    def selection_logits(self, interests, target_emb):
        """Correlation ``c [B, K]`` between each interest and the target item (times T for p / l)."""
        if self.selection == "l":
            return interest_logits(self.l1(interests), self.l2(target_emb))
        return interest_logits(interests, target_emb)

    def select_interest(self, interests, target_emb):
        """Choose one interest per row for the single-interest loss.

        Returns ``(index [B], weights [B, K] or None)``: ``weights`` is the straight-through one-hot
        of BaM_l with ``l_grad: straight_through`` (value = one-hot, gradient through the softmax);
        otherwise the chosen interest is used directly (no gradient through the choice).
        """
        c = self.selection_logits(interests, target_emb)
        weights = None
        if self.selection == "hard":
            index = c.argmax(dim=1)
        else:
            probs = torch.softmax(self.T * c, dim=1)
            index = torch.multinomial(probs.detach(), 1).squeeze(1)
            if self.selection == "l" and self.l_grad == "straight_through":
                one_hot = F.one_hot(index, self.interest_num).to(probs.dtype)
                weights = one_hot - probs.detach() + probs
        with torch.no_grad():
            k = self.interest_num
            self.route_selected += torch.bincount(index, minlength=k).to(self.route_selected.dtype)
            dominant = (c if self.selection != "l" else interest_logits(interests, target_emb)).argmax(dim=1)
            self.route_argmax += torch.bincount(dominant, minlength=k).to(self.route_argmax.dtype)
        return index, weights

    @staticmethod
    def pick(values, index, weights):
        """``values [B, K, ...]`` at the chosen interest (or weighted by the straight-through one-hot)."""
        if weights is not None:
            return (weights.view(weights.shape + (1,) * (values.dim() - 2)) * values).sum(1)
        shape = (values.shape[0], 1) + values.shape[2:]
        return values.gather(1, index.view((-1, 1) + (1,) * (values.dim() - 2)).expand(shape)).squeeze(1)

    def sample_negatives(self, batch_size, device):
        """Uniform negatives, without replacement, for the whole batch in one call.

        ``batch`` (default): one uniform ``sampled_n``-subset shared by all rows, ``[n]`` — every row's
        negatives have exactly the original's distribution (a uniform subset without replacement); only
        rows of one batch are no longer independent. Scoring is then one GEMM. ``row`` (the original's
        exact scheme): an independent subset per row (top-k of random keys == ``torch.multinomial``
        without replacement), ``[B, n]``. PAD (id 0) is a possible negative unless ``neg_exclude_pad``;
        neither the positive nor the history is excluded (quirk Q3).
        """
        offset = 1 if self.neg_exclude_pad else 0
        pool = self.n_items - offset
        if self.neg_sample_mode == "batch":
            return torch.randperm(pool, device=device)[: self.sampled_n] + offset
        keys = torch.rand(batch_size, pool, device=device)
        return keys.topk(self.sampled_n, dim=1, sorted=False).indices + offset

    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        pos_items = interaction[self.POS_ITEM_ID]
        interests, attention = self.extract_interests(item_seq, item_seq_len)
        pos_emb = self.item_embedding(pos_items)
        index, weights = self.select_interest(interests, pos_emb)

        neg_items = self.sample_negatives(interests.shape[0], item_seq.device)
        neg_emb = self.item_embedding(neg_items)  # [n, d] shared by the batch, or [B, n, d]
        # only the gathered logits: every interest against [positive, negatives] (never the catalogue)
        pos_all = interest_logits(interests, pos_emb)  # [B, K]
        neg_all = interest_logits(interests, neg_emb, shared=neg_emb.dim() == 2)  # [B, K, n]
        loss = sampled_softmax_loss(
            self.pick(pos_all, index, weights), self.pick(neg_all, index, weights), self.rbeta
        ).mean()
        if self.multi_loss:  # L_m: multi_interest_scores from the logits above (Eq. 10-13), the same negatives
            loss = loss + sampled_softmax_loss(
                torch.logsumexp(pos_all, dim=1), torch.logsumexp(neg_all, dim=1), self.rbeta
            ).mean()

        rlambda = self.effective_rlambda
        if rlambda and attention is not None:
            loss = loss + rlambda * routing_regularization(attention, self.embedding_size)
        return loss

    # ------------------------------------------------------------------------------------------
    def predict(self, interaction):
        interests = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return interest_logits(interests, self.item_embedding(interaction[self.ITEM_ID])).max(dim=1).values

    def full_sort_predict(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        interests = self.forward(item_seq, interaction[self.ITEM_SEQ_LEN])
        if self.eval_scoring == "bf16_rescore" and not torch.is_grad_enabled():
            cand, exact = self._bf16_rescore(interests, item_seq, self.eval_exclude, self.eval_topk)
            scores = exact.new_full((interests.shape[0], self.n_items), float("-inf"))
            return scores.scatter_(1, cand, exact)
        return mask_window(max_scores(interests, self.item_embedding.weight), item_seq, self.history_mask)

    @torch.no_grad()
    def full_sort_topk(self, interaction, k, exclude=None):
        """Item ids ``[B, k]`` of each row's top-``k`` full-sort scores, best first, with PAD and the ``exclude``
        ``(rows, items)`` pairs ranked last — what ``torch.topk`` gives on ``full_sort_predict`` after RecBole's
        masking, without a ``[B, n_items]`` fp32 matrix: users go through in blocks of ``eval_block_size`` whose
        scores stay cache-sized. The trainer uses it when the metrics need only the top-k lists."""
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        b = item_seq.shape[0]
        k = min(k, self.n_items)
        out = torch.empty((b, k), dtype=torch.long, device=item_seq.device)
        scoring = self.auto_scoring if self.eval_scoring == "auto" else self.eval_scoring
        for start in range(0, b, self.eval_block_size):  # a few blocks of users, not a loop over users
            stop = min(b, start + self.eval_block_size)
            # the whole pipeline per block: every intermediate stays small enough to be reused by the
            # allocator instead of being mapped (and page-faulted) afresh for each batch
            seq = item_seq[start:stop]
            interests = self.forward(seq, item_seq_len[start:stop])
            block_exclude = rows_in(exclude, start, stop)
            if scoring == "bf16_rescore":
                cand, exact = self._bf16_rescore(interests, seq, block_exclude, k)
                out[start:stop] = cand.gather(1, torch.topk(exact, k, dim=1).indices)
            else:
                scores = masked_exact_scores(interests, self.item_embedding.weight, seq, self.history_mask, block_exclude)
                out[start:stop] = torch.topk(scores, k, dim=1).indices
        return out

    def _bf16_rescore(self, interests, item_seq, exclude, k):
        """:func:`~recbole_ext.model.sequential_recommender.topk_scoring.bf16_rescore` with the bf16 copy of the
        item table (made again whenever the table changes); counts the rows and the fallback rows."""
        weight = self.item_embedding.weight
        if self._weight_bf16 is None or self._weight_bf16[0] is not weight or self._weight_bf16[1] != weight._version:
            self._weight_bf16 = (weight, weight._version) + bf16_table(weight)
        cand, exact, fallback_rows = bf16_rescore(
            interests, weight, *self._weight_bf16[2:], item_seq, self.history_mask, exclude, k, self.rescore_margin
        )
        self.rescore_stats["rows"] += interests.shape[0]
        self.rescore_stats["fallback_rows"] += fallback_rows
        return cand, exact

    # ------------------------------------------------------------------------------------------
    def pop_routing_share(self):
        """Shares of the training targets routed to each interest since the last call (selected by
        the rule in use, and dominant = argmax), then reset. Returns two lists of K floats."""
        selected = self.route_selected / self.route_selected.sum().clamp(min=1)
        argmax = self.route_argmax / self.route_argmax.sum().clamp(min=1)
        self.route_selected.zero_()
        self.route_argmax.zero_()
        return selected.tolist(), argmax.tolist()


def routing_regularization(attention, embedding_size):
    """REMI's routing regularisation: centre A over L (padding included), C = A A^T / d, and
    ``sum over the batch of ||diag(C)||_2^2`` (a sum, not a mean: quirk Q5)."""
    centred = attention - attention.mean(dim=2, keepdim=True)
    diag = (centred * centred).sum(dim=2) / embedding_size  # diag of C, [B, K]
    return (diag * diag).sum()
