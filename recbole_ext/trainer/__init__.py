"""recbole_ext trainers (looked up by name before RecBole's: ``trainer: <Name>`` in a config)."""

from recbole_ext.trainer.rerank import RERANKERS, Reranker, register_reranker, scores_from_ranking
from recbole_ext.trainer.trainer import ExtTrainerMixin, Trainer, compose_trainer
from recbole_ext.trainer.bam import BaMTrainer  # noqa: E402  (multi-interest models, issue 3)

__all__ = [
    "ExtTrainerMixin",
    "Trainer",
    "compose_trainer",
    "Reranker",
    "RERANKERS",
    "register_reranker",
    "scores_from_ranking",
]
from recbole_ext.trainer.cp import CPReranker  # noqa: E402  (calibrated re-ranking, issue 5)
from recbole_ext.trainer.calitune import CaliTuneTrainer  # noqa: E402  (CaliTune fine-tuning, issue 5)
from recbole_ext.trainer.morec import MoRecTrainer  # noqa: E402  (MoRec post-training, issue 4)
from recbole_ext.trainer.peterrec import PeterRecTrainer  # noqa: E402  (PeterRec fine-tuning, issue 6)
