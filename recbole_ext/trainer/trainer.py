"""Trainer extensions shared by every run of recbole_ext.

:class:`ExtTrainerMixin` is mixed into whatever trainer a run uses — ours or any of RecBole's — by
:func:`compose_trainer`. It adds the extended collector (side information for metrics) and the
re-ranking hook of full-sort evaluation, and lets evaluate-only flows collect training statistics.
"""

from recbole.trainer import Trainer as RecBoleTrainer

from recbole_ext.evaluator.collector import ExtCollector
from recbole_ext.trainer.rerank import build_reranker, scores_from_ranking


class ExtTrainerMixin:
    """Extended collector + re-ranking hook; place before a RecBole ``Trainer`` in the bases."""

    def __init__(self, config, model):
        super().__init__(config, model)
        if hasattr(self, "eval_collector"):
            self.eval_collector = ExtCollector(config)
        self.reranker = build_reranker(config)
        self._train_collected = False

    def collect_train_data(self, train_data):
        """Give the collector the training statistics (item counts, side information). ``fit`` does
        this itself; call it before :meth:`evaluate` when evaluating a model that was not fitted."""
        self.eval_collector.data_collect(train_data)
        self._train_collected = True

    def fit(self, train_data, *args, **kwargs):
        self._train_collected = True  # RecBole's fit calls data_collect
        return super().fit(train_data, *args, **kwargs)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and self.reranker is not None:
            self.reranker.prepare(self, eval_data)
        return super().evaluate(
            eval_data, load_best_model=load_best_model, model_file=model_file, show_progress=show_progress
        )

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        if self.reranker is not None:
            ranked = self.reranker.rerank(scores, interaction)
            scores = scores_from_ranking(ranked, scores.shape[1])
        return interaction, scores, positive_u, positive_i


_COMPOSED = {}


def compose_trainer(trainer_class):
    """``trainer_class`` with :class:`ExtTrainerMixin` in front (cached; same name)."""
    if issubclass(trainer_class, ExtTrainerMixin) or not issubclass(trainer_class, RecBoleTrainer):
        return trainer_class
    if trainer_class not in _COMPOSED:
        _COMPOSED[trainer_class] = type(
            trainer_class.__name__,
            (ExtTrainerMixin, trainer_class),
            {"__module__": __name__, "__doc__": trainer_class.__doc__},
        )
    return _COMPOSED[trainer_class]


class Trainer(ExtTrainerMixin, RecBoleTrainer):
    """Base class for recbole_ext's own trainers."""
