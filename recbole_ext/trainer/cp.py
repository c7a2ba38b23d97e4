"""CP: calibrated re-ranking (Steck 2018, as implemented in CaliTune's evaluation; spec §8).

Post-processor on the full-sort re-ranking hook — any model can be evaluated with::

    rerank: cp
    cp_lambda: 0.5          # trade-off λ ∈ [0, 1]; 0 = the backbone's own ranking
    cp_candidates: 100      # m, the top-m items the greedy step chooses from
    cp_divergence: jsd      # jsd (original CaliTune CP, default) | kl (Steck's KL with α smoothing)
    cp_alpha: 0.01          # α of the kl variant
    cp_relevance: sum       # sum (original: Σ relevance of the list) | mean (the unused "average" variant)

Relevance = global min–max normalisation of the masked scores over the **whole** user × item matrix
(quirk C7): :meth:`CPReranker.prepare` schedules a first pass over the evaluation data that finds the
global minimum and maximum finite score; it runs at the first re-ranked batch, i.e. after the trainer
has loaded the model being evaluated. The greedy steps run for a whole batch of users at once: at step
t every candidate's objective (1 − λ)·Σ s + λ·(−D(P_u, Q(L ∪ {j}))) is evaluated as a [B, m] tensor.
"""

import torch

from recbole_ext.data.popularity import calibration_data
from recbole_ext.errors import ConfigError
from recbole_ext.trainer.rerank import Reranker

EPS = 1e-10


def cp_jsd(p, q):
    """JSD inside CP (spec §8): ε added to both arguments and renormalised, log base 2."""
    p = p + EPS
    q = q + EPS
    p = p / p.sum(-1, keepdim=True)
    q = q / q.sum(-1, keepdim=True)
    m = 0.5 * (p + q)
    return 0.5 * (p * torch.log2(p / m)).sum(-1) + 0.5 * (q * torch.log2(q / m)).sum(-1)


def steck_kl(p, q, alpha=0.01):
    """Steck's KL(p ‖ q̃), q̃ = (1 − α) q + α p (natural log, 0·log 0 = 0)."""
    q_tilde = (1.0 - alpha) * q + alpha * p
    terms = torch.where(p > 0, p * torch.log(p / q_tilde.clamp_min(EPS)), torch.zeros_like(p))
    return terms.sum(-1)


def calibrated_rerank(relevance, cand_groups, targets, n, lam, divergence="jsd", alpha=0.01, mean=False):
    """Greedy calibrated re-ranking of a batch.

    relevance: ``[B, m]`` candidate relevance, best first (−inf = not a candidate);
    cand_groups: ``[B, m]`` group ids (0..G−1) of the candidates; targets: ``[B, G]`` P_u;
    returns ``[B, n]`` positions into the candidate axis, in pick order.
    """
    batch, m = relevance.shape
    n_groups = targets.shape[1]
    device = relevance.device
    dtype = torch.float64
    relevance = relevance.to(dtype)
    targets = targets.to(dtype)
    valid = torch.isfinite(relevance)
    rel = torch.where(valid, relevance, torch.zeros_like(relevance))
    counts = torch.zeros(batch, n_groups, dtype=dtype, device=device)
    chosen = torch.zeros(batch, m, dtype=torch.bool, device=device)
    rel_sum = torch.zeros(batch, 1, dtype=dtype, device=device)
    eye = torch.eye(n_groups, dtype=dtype, device=device)
    groups = cand_groups.clamp_min(0)
    picks = torch.empty(batch, n, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)
    div = cp_jsd if divergence == "jsd" else (lambda p, q: steck_kl(p, q, alpha))
    for step in range(n):
        # distribution of the list extended by one item of each group: [B, G(new item), G]
        extended = (counts.unsqueeze(1) + eye.unsqueeze(0)) / float(step + 1)
        per_group = div(targets.unsqueeze(1), extended)  # [B, G]
        cand_div = torch.gather(per_group, 1, groups)  # [B, m]
        total_rel = rel_sum + rel
        if mean:
            total_rel = total_rel / float(step + 1)
        utility = (1.0 - lam) * total_rel - lam * cand_div
        utility = utility.masked_fill(chosen | ~valid, float("-inf"))
        best = torch.argmax(utility, dim=1)  # first maximum = earlier candidate (strict ">")
        picks[:, step] = best
        chosen[rows, best] = True
        rel_sum = rel_sum + rel[rows, best].unsqueeze(1)
        counts = counts + eye[groups[rows, best]]
    return picks


class CPReranker(Reranker):
    """Calibrated greedy re-ranking over the top-``cp_candidates`` items (CaliTune's CP baseline)."""

    name = "cp"

    def __init__(self, config):
        super().__init__(config)
        lam = config["cp_lambda"]
        self.lam = 0.5 if lam is None else float(lam)
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"cp_lambda must lie in [0, 1] (0 = backbone ranking), got {self.lam}")
        m = config["cp_candidates"]
        self.m = 100 if m is None else int(m)
        if self.m < self.topk:
            raise ConfigError(
                f"cp_candidates (m = {self.m}) must be at least max(topk) = {self.topk}: the greedy step "
                "picks the top-k list from the top-m candidates"
            )
        self.divergence = str(config["cp_divergence"] or "jsd").lower()
        if self.divergence not in ("jsd", "kl"):
            raise ConfigError(f"cp_divergence must be 'jsd' (CaliTune's CP) or 'kl' (Steck), got '{self.divergence}'")
        alpha = config["cp_alpha"]
        self.alpha = 0.01 if alpha is None else float(alpha)
        mode = str(config["cp_relevance"] or "sum").lower()
        if mode not in ("sum", "mean"):
            raise ConfigError(f"cp_relevance must be 'sum' (original) or 'mean', got '{mode}'")
        self.mean = mode == "mean"
        self.uid_field = config["USER_ID_FIELD"]
        self.trainer = None
        self.eval_data = None
        self.score_min = None
        self.score_max = None
        self.calib = None

    # -------------------------------------------------------------------------------------------
    def prepare(self, trainer, eval_data):
        """Schedule the global min/max pass (run lazily, once the evaluated weights are loaded)."""
        self.trainer = trainer
        self.eval_data = eval_data
        self.score_min = self.score_max = None
        dataset = getattr(trainer.eval_collector, "train_dataset", None)
        if dataset is None:
            raise ConfigError(
                "rerank: cp needs the training data (popularity groups and user targets): call "
                "trainer.fit(...) or trainer.collect_train_data(train_data) before evaluate()"
            )
        self.calib = calibration_data(dataset, trainer.config)

    def set_score_range(self, low, high):
        """Set the global score range directly (when the caller has already scored every user)."""
        self.score_min, self.score_max = float(low), float(high)

    @torch.no_grad()
    def _score_range(self):
        trainer = self.trainer
        saved, trainer.reranker = trainer.reranker, None
        low, high = float("inf"), float("-inf")
        try:
            for batched in self.eval_data:
                _, scores, _, _ = trainer._full_sort_batch_eval(batched)
                finite = scores[torch.isfinite(scores)]
                if finite.numel():
                    low = min(low, float(finite.min()))
                    high = max(high, float(finite.max()))
        finally:
            trainer.reranker = saved
        if getattr(trainer, "distributed", False):  # each process scored its shard: the global range
            import torch.distributed as dist

            bounds = torch.tensor([-low, high], dtype=torch.float64)
            dist.all_reduce(bounds, op=dist.ReduceOp.MAX)
            low, high = -float(bounds[0]), float(bounds[1])
        self.set_score_range(low, high)

    def rerank(self, scores, interaction):
        if self.score_min is None:
            self._score_range()
        users = interaction[self.uid_field]
        if users.shape[0] != scores.shape[0]:
            users = torch.unique_consecutive(users)
        span = self.score_max - self.score_min
        m = min(self.m, scores.shape[1])
        top_scores, cand = torch.topk(scores, m, dim=1)
        relevance = (top_scores - self.score_min) / (span if span > 0 else 1.0)
        groups = self.calib.item_group.to(scores.device)[cand]
        targets = self.calib.user_target.to(scores.device)[users.long()]
        if self.lam == 0.0:
            return cand[:, : self.topk]
        picks = calibrated_rerank(relevance, groups, targets, self.topk, self.lam, self.divergence, self.alpha, self.mean)
        return torch.gather(cand, 1, picks)
