"""The trainer base: everything recbole_ext adds to RecBole's trainers, in one place.

:class:`ExtTrainerMixin` is mixed into whatever trainer a run uses — ours or any of RecBole's — by
:func:`compose_trainer`. It owns

* checkpoints: written atomically in the weights-only-safe format of :mod:`recbole_ext.checkpoint`
  (torch >= 2.6 refuses RecBole's pickled ``Config``), read back with ``weights_only=True`` when
  resuming and when evaluating the best model; names unique across runs started in the same second (in
  one process or several); the best model is only ever loaded from a file this trainer wrote or was
  given; resuming refuses another dataset or split and restores the random-number states, so that a
  resumed run equals an uninterrupted one;
* evaluation: the extended collector (side information for metrics), the re-ranking hook of
  full-sort evaluation and the top-k-only path for models with ``full_sort_topk``; every evaluation
  starts from the current weights (:meth:`ExtTrainerMixin.invalidate_model_caches`);
* multi-process runs (torch.distributed, ``docs/distributed.md``): DDP that also trains on CPU (Gloo),
  every process uses rank 0's checkpoint name and waits for it before loading, and evaluation gathers
  all processes' rows so that every metric is computed once over all users (RecBole averages
  per-process metric values instead).
"""

import numbers
import os
import warnings
from collections import OrderedDict

from recbole.trainer import Trainer as RecBoleTrainer
from recbole.utils import set_color
from tqdm import tqdm

from recbole_ext import checkpoint as ckpt
from recbole_ext import distributed
from recbole_ext.errors import CheckpointError, ConfigError
from recbole_ext.evaluator.collector import ExtCollector, TopKScores
from recbole_ext.io import atomic_torch_save, unique_path
from recbole_ext.trainer.rerank import build_reranker, scores_from_ranking


def run_label(config):
    """The name of what a run trains and evaluates, for file names: ``<model>[-<trainer>][-<re-ranker>]``
    (``BPR``, ``BPR-MoRec``, ``BPR-CaliTune``, ``BPR-CP``). Only an explicitly chosen trainer (config key
    ``trainer``) is named: a model's own trainer is implied by the model."""
    return "-".join(_label_parts(config))


def run_title(config):
    """The human-readable title of a run: ``BPR + CP on ml-100k`` (the parts of :func:`run_label`)."""
    return " + ".join(_label_parts(config)) + f" on {config['dataset']}"


def _label_parts(config):
    from recbole_ext.registry import find_reranker, find_trainer

    parts = [str(config["model"])]
    trainer = config["trainer"] if "trainer" in config else None
    if trainer:
        cls = find_trainer(str(trainer))
        name = cls.__name__ if cls is not None else str(trainer)
        name = name[: -len("Trainer")] if name.endswith("Trainer") else name
        if name:
            parts.append(name)
    rerank = config["rerank"] if "rerank" in config else None
    if rerank is not None and str(rerank).lower() not in ("", "none", "false"):
        cls = find_reranker(rerank)
        parts.append(getattr(cls, "label", None) or str(cls.name or rerank).upper())
    return parts


def labelled_checkpoint_name(path, config):
    """RecBole's ``<dir>/<model>-<time>.pth`` with the :func:`run_label` in place of the model name."""
    directory, base = os.path.split(path)
    model = str(config["model"])
    if base.startswith(model + "-"):
        base = run_label(config) + base[len(model):]
    return os.path.join(directory, base)


def plain_result(result):
    """``result`` (a metric dict) with plain Python numbers: RecBole's metrics are NumPy scalars, whose repr in
    Python >= 3.11 with NumPy 2 is ``np.float64(0.123)``; the mapping type (OrderedDict) is kept."""
    if result is None:
        return None
    plain = {k: _plain_number(v) for k, v in result.items()}
    return type(result)(plain) if isinstance(result, OrderedDict) else plain


def _plain_number(value):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # 0-d tensor / array
        return value.item()
    return value


def format_result(result, digits=4):
    """``name value  name value`` with plain numbers (log lines; no ``np.float64(...)``)."""
    if not result:
        return str(result)
    return "  ".join(f"{k} {v:.{digits}f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in plain_result(result).items())


class ExtTrainerMixin:
    """Checkpoints, extended collector, re-ranking hook, DDP on CPU; place before a RecBole ``Trainer``."""

    #: False for trainers whose own training loop does not shard data / reduce gradients and signals
    #: across processes yet: a multi-process run then stops with a clear error instead of training
    #: diverging replicas.
    supports_distributed = True
    #: True for trainers (or models) that read ``pretrained_model_file`` themselves (MoRec, CaliTune, PeterRec);
    #: for every other trainer the base starts the model from that checkpoint's weights (see __init__).
    loads_pretrained_model_file = False

    def __init__(self, config, model):
        multi_process = not config["single_spec"]
        if multi_process and not self.supports_distributed:
            raise ConfigError(
                f"{type(self).__name__} does not support multi-process (DDP) training yet: run it in one "
                "process (no --nproc / --world_size). See docs/distributed.md"
            )
        if multi_process:
            # RecBole's AbstractTrainer.__init__ would build DDP with device_ids (CUDA only): build it here
            config["single_spec"] = True
        try:
            super().__init__(config, model)
        finally:
            config["single_spec"] = not multi_process
        if config["pretrained_model_file"] and not self.loads_pretrained_model_file:
            # without this a plain trainer would ignore the key silently and train / evaluate fresh weights
            # (e.g. `--pretrained_model_file=X --epochs=0 --rerank=cp` would score an untrained model)
            ckpt.load_pretrained(model, config["pretrained_model_file"], config)
            self.logger.info(f"model initialised from pretrained_model_file {config['pretrained_model_file']}")
        if multi_process:
            self.model, self.distributed_model = distributed.wrap_ddp(model, config)
        if hasattr(self, "eval_collector"):
            self.eval_collector = ExtCollector(config)
        self.reranker = build_reranker(config)
        # False: always hand the collector full score matrices (e.g. to compare with the top-k-only path)
        self.topk_only_eval = True
        if getattr(self, "saved_model_file", None):
            # <model>-<time>.pth -> <run label>-<time>-<pid>.pth (BPR-MoRec-..., BPR-CP-...)
            self.saved_model_file = unique_path(labelled_checkpoint_name(self.saved_model_file, config))
        if self.distributed:
            # every process must read the checkpoint rank 0 writes (RecBole names it per process,
            # by local time: the names differ when the processes start in different seconds)
            self.saved_model_file = distributed.broadcast_from_rank0(getattr(self, "saved_model_file", None))
        # the name chosen for this run's checkpoint: loaded only once this trainer has written it
        self._own_model_file = os.path.abspath(self.saved_model_file) if getattr(self, "saved_model_file", None) else None
        self._written = set()  # checkpoints this trainer wrote (rank 0 for all processes) or was given
        self.last_checkpoint = None  # the checkpoint written last (for the Ctrl-C message), or None
        self._train_data = None
        self._resume_rng = None
        self.last_valid = None  # (score, result) of the latest validation
        self.eval_only = False  # the latest fit ran no epoch (epochs: 0, or resumed after the last epoch)

    # --- run outputs ---------------------------------------------------------------------------
    @property
    def checkpoint_file(self):
        """The absolute path of the checkpoint this run's evaluation reads (written by this trainer or given
        to it, e.g. by ``resume_checkpoint``), or ``None`` when it has none (an evaluation-only run)."""
        path = getattr(self, "saved_model_file", None)
        path = os.path.abspath(path) if path else None
        return path if path in self._written else None

    def progress(self, iterable, desc, show_progress, total=None):
        """``iterable`` wrapped in a tqdm bar (RecBole's look) when ``show_progress``, on the main process only."""
        if not show_progress or not self.is_main_process:
            return iterable
        return tqdm(iterable, total=total, ncols=100, desc=set_color(desc, "pink"))

    def flush_tensorboard(self):
        """Write the queued TensorBoard events now (RecBole never closes its writer, whose background thread
        flushes every 120 s: a shorter run would lose them at exit)."""
        writer = getattr(self, "tensorboard", None)
        if writer is not None and hasattr(writer, "flush"):
            writer.flush()

    def log_scalars(self, tag, values, step):
        """``values`` (a number, or a dict of numbers: ``tag/<key>``) to TensorBoard through RecBole's writer
        (``self.tensorboard``, under ``log_tensorboard/``), main process only; ``None`` / non-numbers skipped."""
        writer = getattr(self, "tensorboard", None)
        if writer is None or not self.is_main_process:
            return
        items = values.items() if isinstance(values, dict) else [(None, values)]
        for key, value in items:
            value = _plain_number(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            writer.add_scalar(tag if key is None else f"{tag}/{key}", value, step)

    @property
    def distributed(self):
        """True in a multi-process (torch.distributed) run."""
        return distributed.is_distributed(self.config)

    @property
    def is_main_process(self):
        """True in a single-process run and on global rank 0: the process that writes files."""
        return distributed.is_main_process(self.config)

    # --- checkpoints ---------------------------------------------------------------------------
    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        if self.is_main_process:  # rank 0 writes the file of every process
            atomic_torch_save(ckpt.build_state(self, epoch), saved_model_file)
        self._written.add(os.path.abspath(saved_model_file))
        self.last_checkpoint = saved_model_file
        if verbose and self.is_main_process:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def save_pretrained_model(self, epoch, saved_model_file):
        """RecBole's PretrainTrainer (S3Rec, RaCT): the pretraining file is one of our checkpoints, so that the
        pretrain run's own test evaluation reloads it (the fine-tune run reads its ``state_dict``)."""
        self._save_checkpoint(epoch, verbose=False, saved_model_file=saved_model_file)
        self.saved_model_file = saved_model_file

    def rng_generators(self):
        """The generators a checkpoint records besides the global ones: the training loader's shuffle."""
        generator = getattr(self._train_data, "generator", None)
        return {"train_data": generator} if generator is not None else {}

    def resume_checkpoint(self, resume_file):
        """Continue training from ``resume_file``: weights, optimiser, epoch, best score and the random-number
        states (the continuation equals the uninterrupted run). Refuses another model, dataset or split."""
        resume_file = str(resume_file)
        checkpoint = ckpt.load_checkpoint(resume_file, map_location=self.device)
        saved_model = checkpoint["meta"].get("model", "")
        if saved_model.lower() != str(self.config["model"]).lower():
            raise CheckpointError(
                f"cannot resume: {resume_file} belongs to model '{saved_model}', this run trains '{self.config['model']}'"
            )
        ckpt.check_same_data(checkpoint, self.config, resume_file, "resume from")
        self.saved_model_file = resume_file
        self._written.add(os.path.abspath(resume_file))
        self.last_checkpoint = resume_file
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        if checkpoint["best_valid_score"] is not None:
            self.best_valid_score = checkpoint["best_valid_score"]
        if checkpoint.get("best_valid_result") is not None:  # reported when no later epoch is better
            self.best_valid_result = OrderedDict(checkpoint["best_valid_result"])
        ckpt.restore_model(self.model, checkpoint)
        if checkpoint.get("optimizer") is not None:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("rng") is not None:
            self._resume_rng = checkpoint["rng"]  # restored by fit, with the training loader's generator
        else:
            message = (f"{resume_file} holds no random-number states (written before recbole_ext checkpoint "
                       "format 2): the resumed run will not repeat the uninterrupted one exactly")
            self.logger.warning(message)
            warnings.warn(message, stacklevel=2)
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def _valid_epoch(self, valid_data, show_progress=False):
        self.last_valid = super()._valid_epoch(valid_data, show_progress=show_progress)
        return self.last_valid

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._train_data = train_data
        if self._resume_rng is not None:
            ckpt.restore_rng(self._resume_rng, self.rng_generators())
            self._resume_rng = None
        self.eval_only = self.start_epoch >= self.epochs
        if self.eval_only and saved and not self.save_eval_only_checkpoint():
            # RecBole's fit saves the model (epoch -1) before an evaluation-only run: another copy of the weights
            # it was given (or, after resume_checkpoint, an overwrite of that file); evaluation reads them as they are
            saved = False
            self.logger.info("no epoch to run (epochs: 0): evaluating the weights as they are, no checkpoint "
                             "written (save_eval_only_checkpoint: True writes one)")
        try:
            best = super().fit(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                               callback_fn=callback_fn)
        finally:
            self.flush_tensorboard()
        if isinstance(best, tuple) and len(best) == 2 and isinstance(best[1], dict):
            return best[0], plain_result(best[1])
        return best

    def save_eval_only_checkpoint(self):
        """Config ``save_eval_only_checkpoint``: also write a checkpoint when no epoch runs."""
        return bool(self.config["save_eval_only_checkpoint"]) if "save_eval_only_checkpoint" in self.config else False

    def _load_best_model(self, model_file=None):
        checkpoint_file = model_file or self.saved_model_file
        if not model_file and self.eval_only and self.checkpoint_file is None:
            # an evaluation-only fit wrote no checkpoint (save_eval_only_checkpoint: False): its "best model"
            # is the model as it is (pretrained_model_file's weights, or the trainer's own start)
            self.logger.info("evaluating the weights as they are (evaluation-only run: no checkpoint to load)")
            return
        if not model_file and os.path.abspath(checkpoint_file) == self._own_model_file and (
            self._own_model_file not in self._written
        ):
            raise CheckpointError(
                f"this run has saved no checkpoint ({checkpoint_file} was never written: fit(saved=False), or no "
                "fit yet), so there is no best model to load: evaluate(..., load_best_model=False) evaluates the "
                "model as it is, evaluate(..., model_file=<checkpoint>) a saved one"
            )
        if self.distributed:
            distributed.barrier()  # rank 0 has finished writing the checkpoint every process reads
        ckpt.restore_model(self.model, ckpt.load_checkpoint(checkpoint_file, map_location=self.device))
        self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")

    # --- evaluation ----------------------------------------------------------------------------
    def invalidate_model_caches(self):
        """Forget what the model keeps between predictions (RecBole's graph models cache their full-sort
        embeddings and clear them only in ``calculate_loss``; see ``checkpoint.MODEL_CACHE_ATTRIBUTES``).
        Called before every evaluation; a trainer that changes the weights without ``calculate_loss`` calls
        it after every optimiser step. Returns the attribute names cleared."""
        return ckpt.clear_model_caches(self.model)

    def collect_train_data(self, train_data):
        """Give the collector the training statistics (item counts, side information). ``fit`` does
        this itself; call it before :meth:`evaluate` when evaluating a model that was not fitted."""
        self.eval_collector.data_collect(train_data)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if not eval_data:
            return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
        if load_best_model:
            self._load_best_model(model_file)
        self.invalidate_model_caches()  # scores of the weights as they are now, not of a cached earlier state
        if self.reranker is not None:
            self.reranker.prepare(self, eval_data)
        if self.distributed:
            self._set_eval_shard(eval_data)
        try:
            return plain_result(super().evaluate(eval_data, load_best_model=False, model_file=model_file,
                                                 show_progress=show_progress))
        finally:
            if hasattr(self.eval_collector, "set_shard"):
                self.eval_collector.set_shard(None, None)

    def _set_eval_shard(self, eval_data):
        """Tell the collector which of this process's evaluation rows are real (see ExtCollector)."""
        sampler = getattr(eval_data, "sampler", None)
        n_real = distributed.real_row_count(sampler)
        if n_real is not None and hasattr(self.eval_collector, "set_shard"):
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
