"""CP: calibrated re-ranking (Steck 2018, as implemented in CaliTune's evaluation; spec §8).

Post-processor on the full-sort re-ranking hook — any model can be evaluated with ``rerank: cp``
(options and defaults: ``properties/rerank/cp.yaml``).

Relevance = global min–max normalisation of the masked scores over the **whole** user × item matrix
(quirk C7): :meth:`CPReranker.prepare` schedules a first pass over the evaluation data that finds the
global minimum and maximum finite score; it runs at the first re-ranked batch, i.e. after the trainer
has loaded the model being evaluated. The greedy steps run for a whole batch of users at once: at step
t every candidate's objective (1 − λ)·Σ s + λ·(−D(P_u, Q(L ∪ {j}))) is evaluated as a [B, m] tensor.
"""


import torch

from recbole_ext import distributed, options
from recbole_ext.data.popularity import calibration_data
from recbole_ext.errors import ConfigError
from recbole_ext.evaluator.metrics.calibration import miscalibration_kl
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
    div = cp_jsd if divergence == "jsd" else (lambda p, q: miscalibration_kl(p, q, alpha))
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
        self.lam = float(config["cp_lambda"])
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"cp_lambda must lie in [0, 1] (0 = backbone ranking), got {self.lam}")
        self.m = int(config["cp_candidates"])
        if self.m < self.topk:
            raise ConfigError(
                f"cp_candidates (m = {self.m}) must be at least max(topk) = {self.topk}: the greedy step "
                "picks the top-k list from the top-m candidates"
            )
        choices = options.check_choices(config, {"cp_divergence": ("jsd", "kl"), "cp_relevance": ("sum", "mean")}, "cp")
        self.divergence = choices["cp_divergence"]
        self.alpha = float(config["cp_alpha"])
        self.mean = choices["cp_relevance"] == "mean"
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
        if trainer.distributed:  # each process scored its shard: the global range
            ranges = distributed.gather_objects((low, high))
            low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        self.score_min, self.score_max = low, high

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
