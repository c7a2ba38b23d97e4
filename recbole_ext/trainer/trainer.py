"""Trainer extensions shared by every run of recbole_ext.

:class:`ExtTrainerMixin` is mixed into whatever trainer a run uses — ours or any of RecBole's — by
:func:`compose_trainer`. It adds the extended collector (side information for metrics) and the
re-ranking hook of full-sort evaluation, and lets evaluate-only flows collect training statistics.

Multi-process runs (torch.distributed, see ``docs/distributed.md``): every process uses rank 0's
checkpoint name, waits for rank 0's checkpoint before loading it, and evaluation gathers all
processes' rows so that every metric is computed once over all users (RecBole averages per-process
metric values instead).
"""

import torch.distributed as dist
from recbole.trainer import Trainer as RecBoleTrainer
from torch.utils.data.distributed import DistributedSampler

from recbole_ext.checkpoint import unique_checkpoint_path
from recbole_ext.evaluator.collector import ExtCollector, TopKScores
from recbole_ext.trainer.rerank import build_reranker, scores_from_ranking


class ExtTrainerMixin:
    """Extended collector + re-ranking hook; place before a RecBole ``Trainer`` in the bases."""

    #: False for trainers whose own training loop does not shard data / reduce gradients and signals
    #: across processes yet: a multi-process run then stops with a clear error instead of training
    #: diverging replicas.
    supports_distributed = True

    def __init__(self, config, model):
        if not config["single_spec"] and not self.supports_distributed:
            from recbole_ext.errors import ConfigError

            raise ConfigError(
                f"{type(self).__name__} does not support multi-process (DDP) training yet: run it in one "
                "process (no --nproc / --world_size). See docs/distributed.md"
            )
        super().__init__(config, model)
        if hasattr(self, "eval_collector"):
            self.eval_collector = ExtCollector(config)
        self.reranker = build_reranker(config)
        # False: always hand the collector full score matrices (e.g. to compare with the top-k-only path)
        self.topk_only_eval = True
        self._train_collected = False
        if getattr(self, "saved_model_file", None):
            self.saved_model_file = unique_checkpoint_path(self.saved_model_file)
        if self.distributed:
            # every process must read the checkpoint rank 0 writes (RecBole names it per process,
            # by local time: the names differ when the processes start in different seconds)
            names = [getattr(self, "saved_model_file", None)]
            dist.broadcast_object_list(names, src=0)
            if names[0] is not None:
                self.saved_model_file = names[0]

    @property
    def distributed(self):
        """True in a multi-process (torch.distributed) run."""
        return not self.config["single_spec"] and dist.is_available() and dist.is_initialized()

    @property
    def is_main_process(self):
        """True in a single-process run and on global rank 0: the process that writes files."""
        return not self.distributed or dist.get_rank() == 0

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
        if self.distributed and eval_data:
            if load_best_model:
                dist.barrier()  # rank 0 has finished writing the checkpoint every process reads
            self._set_eval_shard(eval_data)
        try:
            return super().evaluate(
                eval_data, load_best_model=load_best_model, model_file=model_file, show_progress=show_progress
            )
        finally:
            if hasattr(self.eval_collector, "set_shard"):
                self.eval_collector.set_shard(None, None)

    def _set_eval_shard(self, eval_data):
        """Tell the collector which of this process's evaluation rows are real (see ExtCollector)."""
        sampler = getattr(eval_data, "sampler", None)
        if not isinstance(sampler, DistributedSampler) or not hasattr(self.eval_collector, "set_shard"):
            return
        n_total = len(sampler.dataset)
        n_real = len(range(sampler.rank, n_total, sampler.num_replicas))
        self.eval_collector.set_shard(n_real, sampler.num_samples)

    def _map_reduce(self, result, num_sample):
        """RecBole averages each process's metric values (weighted by its batch count): exact only
        for per-user means of equal shards and wrong for set metrics (coverage, Gini, ...). When the
        collector gathered every process's rows, ``result`` is already the metric over all users."""
        if getattr(self.eval_collector, "gathered", False):
            return result
        return super()._map_reduce(result, num_sample)

    def _topk_only_eval(self):
        """Full-sort batches may return top-k lists only: the model has ``full_sort_topk``, the metrics need
        nothing else (ExtCollector.topk_only) and no re-ranker needs the scores."""
        return (
            self.topk_only_eval
            and self.reranker is None
            and callable(getattr(self.model, "full_sort_topk", None))
            and isinstance(self.eval_collector, ExtCollector)
            and self.eval_collector.topk_only()
        )

    def _full_sort_batch_eval(self, batched_data):
        if self._topk_only_eval():
            interaction, history_index, positive_u, positive_i = batched_data
            interaction = interaction.to(self.device)
            if history_index is not None:
                history_index = tuple(t.to(self.device) for t in history_index)
            indices = self.model.full_sort_topk(interaction, max(self.config["topk"]), history_index)
            return interaction, TopKScores(indices, self.tot_item_num), positive_u, positive_i
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
