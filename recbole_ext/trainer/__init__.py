"""recbole_ext trainers (looked up by name before RecBole's: ``trainer: <Name>`` in a config)."""

from recbole_ext.trainer.rerank import RERANKERS, Reranker, register_reranker, scores_from_ranking
from recbole_ext.trainer.trainer import ExtTrainerMixin, Trainer, compose_trainer

__all__ = [
    "ExtTrainerMixin",
    "Trainer",
    "compose_trainer",
    "Reranker",
    "RERANKERS",
    "register_reranker",
    "scores_from_ranking",
]
