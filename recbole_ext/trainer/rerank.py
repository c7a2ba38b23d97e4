"""Re-ranking stage of full-sort evaluation.

A re-ranker sees, per batch of users, the model's score matrix *after* history and PAD masking
(masked entries are −inf) and returns each user's new ranked list. The trainer turns that list into
a score tensor holding L, L−1, …, 1 at the chosen items and −inf elsewhere, so every top-k metric —
RecBole's and ours — evaluates the re-ranked list. Score-based collector keys (``rec.score``,
``rec.meanrank``) are not meaningful under re-ranking.

Select one with the config key ``rerank: <name>`` (``~`` / ``none`` = off). Re-rankers register with
``@register_reranker("name")`` (:mod:`recbole_ext.registry`).
"""

import torch

from recbole_ext import options
from recbole_ext.registry import RERANKERS, find_reranker, register_reranker  # noqa: F401  (re-exported)


class Reranker:
    """Base class. Subclasses implement :meth:`rerank`; :meth:`prepare` may do a first pass."""

    name = None

    def __init__(self, config):
        options.fill_missing(config, "rerank", self.name)  # defaults, also when switched on after the Config
        self.config = config
        self.topk = max(config["topk"])

    def prepare(self, trainer, eval_data):
        """Called once at the start of every evaluation (e.g. for global score statistics)."""

    def rerank(self, scores, interaction):
        """Return a ``[n_users, L]`` tensor of item ids, best first, with ``L >= max(topk)``."""
        raise NotImplementedError


def scores_from_ranking(ranked_items, n_items):
    """Scores that make ``torch.topk`` return ``ranked_items`` in order: L..1 there, −inf elsewhere."""
    n_users, length = ranked_items.shape
    scores = torch.full((n_users, n_items), float("-inf"), device=ranked_items.device)
    values = torch.arange(length, 0, -1, device=ranked_items.device, dtype=scores.dtype)
    scores.scatter_(1, ranked_items, values.expand(n_users, length))
    return scores


def build_reranker(config):
    """The configured re-ranker, or ``None`` when ``rerank`` is unset or ``none``."""
    name = config["rerank"]
    if name is None or str(name).lower() in ("", "none", "false"):
        return None
    return find_reranker(name)(config)
