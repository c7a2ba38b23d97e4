"""PeterRecTrainer: optimises only the trainable parameters and evaluates with PeterRec's protocols.

Evaluation runs over the *examples* (one (user, target) row of the eval split each), vectorised per batch:

* ``peterrec_eval: sampled`` (the paper's protocol, spec §4.7): per example ``peterrec_eval_negatives`` (99)
  negatives drawn uniformly **with replacement** from ``1..T-1`` excluding only the positive; the positive is ranked
  among them with ties counted against it (quirk P8, faithful). ``peterrec_eval_negatives: -1`` means
  ``#classes - 1`` (the classifier variant, quirk P12: with more than two classes not every class need be drawn).
* ``peterrec_eval: full``: rank against *all* targets ``1..T-1`` (ties against the positive; seen targets are not
  filtered, as in the original). For attribute tasks this is the exact top-1 accuracy (``hit@1``; fix of P12).

Metrics: ``Hit`` and ``MRR`` at every ``topk`` (keys ``hit@k`` / ``mrr@k``, as RecBole names them). Every example
is evaluated (quirk P9 fixed); ``peterrec_eval_max_examples`` caps it if wanted. Negatives come from a generator
seeded with ``seed`` so that every evaluation of a run sees the same candidates.
"""

from collections import OrderedDict

import numpy as np
import torch

from recbole_ext import options
from recbole_ext.errors import ConfigError
from recbole_ext.trainer.trainer import Trainer

PROTOCOLS = ("sampled", "full")
SUPPORTED_METRICS = ("hit", "mrr")


def ranks_against(pos_scores, other_scores):
    """0-based rank of each positive among ``other_scores`` [B, N]; ties count against the positive."""
    return (other_scores >= pos_scores.unsqueeze(1)).sum(dim=1)


def sample_negatives(positives, n_targets, n_negatives, generator=None):
    """``[B, n]`` uniform draws with replacement from ``1..n_targets-1`` without the positive."""
    draw = torch.randint(1, max(n_targets - 1, 2), (positives.numel(), n_negatives), generator=generator)
    return draw + (draw >= positives.cpu().unsqueeze(1)).long()


def rank_metrics(ranks, topk, metrics):
    ranks = ranks.double()
    out = OrderedDict()
    for metric in metrics:
        for k in topk:
            hit = (ranks < k).double()
            out[f"{metric}@{k}"] = hit if metric == "hit" else hit / (ranks + 1)
    return out


class PeterRecTrainer(Trainer):
    """Trainer of :class:`~recbole_ext.model.sequential_recommender.peterrec.PeterRec`."""

    loads_pretrained_model_file = True  # reads pretrained_model_file itself

    def __init__(self, config, model):
        super().__init__(config, model)
        params = model.trainable_parameters() if hasattr(model, "trainable_parameters") else model.parameters()
        self.optimizer = self._build_optimizer(params=params)
        self.protocol = options.check_choices(config, {"peterrec_eval": PROTOCOLS}, "PeterRecTrainer")["peterrec_eval"]
        self.metric_names = [m.lower() for m in config["metrics"]]
        bad = [m for m in self.metric_names if m not in SUPPORTED_METRICS]
        if bad:
            raise ConfigError(f"PeterRec evaluates Hit and MRR only (metrics: [Hit, MRR]); not supported: {bad}")
        self.eval_topk = [int(k) for k in config["topk"]]
        self.n_negatives = int(config["peterrec_eval_negatives"])
        self.max_examples = config["peterrec_eval_max_examples"]

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if not eval_data:
            return None
        if load_best_model:
            self._load_best_model(model_file)  # only a checkpoint this run wrote or was given
        self.model.eval()
        self.invalidate_model_caches()
        dataset = eval_data._dataset
        inter = dataset.inter_feat
        n = len(inter) if self.max_examples is None else min(len(inter), int(self.max_examples))
        n_targets = self.model.n_items
        n_neg = n_targets - 2 if self.n_negatives < 0 else self.n_negatives
        generator = torch.Generator().manual_seed(int(self.config["seed"]))
        batch_size = int(self.config["eval_batch_size"])
        ranks = []
        for start in range(0, n, batch_size):
            batch = dataset.join(inter[np.arange(start, min(n, start + batch_size))]).to(self.device)
            scores = self.model.full_sort_predict(batch)
            pos = batch[self.model.ITEM_ID]
            pos_scores = scores.gather(1, pos.unsqueeze(1)).squeeze(1)
            if self.protocol == "sampled":
                negatives = sample_negatives(pos, n_targets, max(n_neg, 1), generator).to(self.device)
                other = scores.gather(1, negatives)
            else:
                other = scores[:, 1:].clone()  # every real target (row 0 = [PAD]/<UNK> is not a target)
                other.scatter_(1, (pos - 1).unsqueeze(1), float("-inf"))
            ranks.append(ranks_against(pos_scores, other).cpu())
        ranks = torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)
        places = self.config["metric_decimal_place"]
        return OrderedDict(
            (key, round(float(values.mean()) if len(values) else 0.0, places))
            for key, values in rank_metrics(ranks, self.eval_topk, self.metric_names).items()
        )
