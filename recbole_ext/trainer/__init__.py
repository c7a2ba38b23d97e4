"""recbole_ext trainers. The base (:mod:`.trainer`) and the re-ranking hook (:mod:`.rerank`) are
exported here; each method's trainer lives in its own module and is found by name through
:mod:`recbole_ext.registry` (``trainer: MoRec`` in a config), never through this package's imports."""

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
