"""``run_recbole`` and ``load_data_and_model`` for recbole_ext and RecBole models.

Replaces ``recbole.quick_start`` (never imported: it imports ray, which breaks on NumPy 2).
"""

import json
import os
import platform
import time
from collections import namedtuple
from logging import getLogger

import torch
from recbole.utils import init_logger, init_seed, set_color

from recbole_ext import checkpoint as ckpt
from recbole_ext import distributed
from recbole_ext.config import Config
from recbole_ext.errors import ConfigError, RunInterrupted
from recbole_ext.evaluator.per_user import mismatched_columns, per_user_table, split_metrics
from recbole_ext.io import atomic_write_text, check_writable_dir, unique_path
from recbole_ext.trainer.trainer import format_result, run_label, run_title
from recbole_ext.utils import create_dataset, data_preparation, get_model, get_trainer

#: What :func:`setup_run` builds; ``trainer`` is ``None`` when not asked for.
Run = namedtuple("Run", "config dataset train_data valid_data test_data model trainer")
# keys that say how a checkpoint was made, not how to rebuild its model and data
_RUN_ONLY_KEYS = ("model", "dataset", "trainer", "pretrained_model_file")


def setup_run(config, with_trainer=True, checkpoint=None, checkpoint_file="the checkpoint"):
    """The one set-up sequence of every entry point: seed → logger → dataset → loaders → model (→ trainer).

    ``config`` is a :class:`recbole_ext.Config`; ``checkpoint`` (a loaded checkpoint dictionary, read from
    ``checkpoint_file``) restores the model's weights once its dataset and train/valid/test split are
    found to be this run's (:func:`recbole_ext.checkpoint.check_same_data`). Used by :func:`run_recbole`,
    :func:`load_data_and_model`, the analysis helpers, the benchmarks and the demo.
    """
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    if checkpoint is not None:
        ckpt.check_same_data(checkpoint, config, checkpoint_file, "load")
    model, trainer = build_model_and_trainer(config, train_data, with_trainer)
    logger.info(model)
    if checkpoint is not None:
        ckpt.restore_model(model, checkpoint)
    return Run(config, dataset, train_data, valid_data, test_data, model, trainer)


def build_model_and_trainer(config, train_data, with_trainer=True):
    """Instantiate the configured model on ``train_data`` and its (composed) trainer."""
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config.model_class)(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"], config)(config, model) if with_trainer else None
    return model, trainer


def config_from_checkpoint(checkpoint, config_dict=None):
    """The ``Config`` a checkpoint was trained with (its user-given part, without the keys that say how it
    was made: trainer, pretrained model), updated by ``config_dict``."""
    meta = checkpoint["meta"]
    user_config = {k: v for k, v in checkpoint.get("external_config", {}).items() if k not in _RUN_ONLY_KEYS}
    user_config.update(config_dict or {})
    return Config(model=meta["model"], dataset=meta["dataset"], config_dict=user_config, cmd_args=[])


def summary_path(config, stem=None):
    """A new summary path under ``config['results_dir']``: <stem>-<time>-<pid>[-n].json, unique across processes
    and runs of this process. ``stem`` defaults to <run label>-<dataset> (run label: ``BPR``, ``BPR-MoRec``,
    ``BPR-CP``, see :func:`recbole_ext.trainer.trainer.run_label`)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = stem or f"{run_label(config)}-{config['dataset']}"
    return unique_path(os.path.join(config["results_dir"], f"{stem}-{stamp}.json"), ext=".json")


def write_summary(config, summary, path=None):
    """Write ``summary`` as JSON to ``path`` (default: a new :func:`summary_path`), atomically; return the path."""
    path = path or summary_path(config)
    atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return path


def per_user_path(path):
    """``<summary stem>.per_user.csv`` beside the summary ``path``."""
    return os.path.splitext(path)[0] + ".per_user.csv"


def write_per_user(run, trainer, test_result, path):
    """Write the test evaluation's per-user table (``save_per_user``) to ``path``; return the summary keys
    ``per_user`` (absolute path, or ``None`` when nothing could be written) and ``per_user_skipped``
    (``{metric: reason}``). A column whose mean is not the run's reported value is left out, never written."""
    config = run.config
    collector = trainer.eval_collector
    struct = getattr(collector, "last_struct", None)
    skipped = split_metrics(config)[1]
    if struct is None:
        skipped["*"] = "the test evaluation kept no per-user data"
        return {"per_user": None, "per_user_skipped": skipped}
    if distributed.is_distributed(config) and not getattr(collector, "gathered", False):
        skipped["*"] = "the multi-process evaluation did not gather every process's users"
        return {"per_user": None, "per_user_skipped": skipped}
    table = per_user_table(config, struct, run.dataset)
    for column, (mean, reported) in mismatched_columns(table, test_result, config["metric_decimal_place"]).items():
        skipped[column] = f"per-user mean {mean!r} is not the reported value {reported!r}"
        getLogger().warning(f"save_per_user: column {column} left out: {skipped[column]}")
        table = table.drop(columns=column)
    atomic_write_text(path, table.to_csv(index=False))
    return {"per_user": os.path.abspath(path), "per_user_skipped": skipped}


def run_recbole(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, cmd_args=None,
                write_results=True, queue=None):
    """Train and evaluate a model, as ``recbole.quick_start.run_recbole`` does.

    Returns a dict with ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``,
    ``test_result`` (RecBole's keys) plus ``train_seconds``, ``eval_seconds``, ``checkpoint``,
    ``summary_path`` and the ``config``; with ``save_per_user: True`` also ``per_user`` (the test evaluation's
    per-user CSV beside the summary, see :mod:`recbole_ext.evaluator.per_user`) and ``per_user_skipped``.

    Refuses unwritable ``checkpoint_dir`` / ``results_dir`` before reading data (:class:`ConfigError`);
    Ctrl-C raises :class:`recbole_ext.errors.RunInterrupted` naming the last checkpoint written.

    Multi-process runs (``config_dict`` holds ``local_rank``, ``world_size``, ``ip``, ``port``, ...;
    see :func:`run_recboles`): only global rank 0 writes the summary (and checkpoints); every process
    puts its result, without the ``config`` object, on ``queue`` when one is given; the
    process group is destroyed at the end, as in RecBole.
    """
    config = Config(model, dataset, config_file_list, config_dict, cmd_args)
    check_output_dirs(config, write_results)
    run = None
    try:
        run = setup_run(config)
        return _train_and_test(run, saved, write_results, queue)
    except RunInterrupted:
        raise
    except KeyboardInterrupt as err:
        raise _interrupted(run.trainer if run is not None else None) from err


def check_output_dirs(config, write_results=True):
    """Fail before any data is read if ``checkpoint_dir`` (or, when a summary is written, ``results_dir``)
    cannot be written — not after training."""
    check_writable_dir(config["checkpoint_dir"], "checkpoint_dir")
    if write_results:
        check_writable_dir(config["results_dir"], "results_dir")


def _interrupted(trainer):
    """The :class:`RunInterrupted` of a run stopped by Ctrl-C: names the last checkpoint it wrote and how
    to resume from it."""
    path = getattr(trainer, "last_checkpoint", None)
    if path is None:
        return RunInterrupted("interrupted (Ctrl-C) before any checkpoint was written: nothing to resume")
    path = os.path.abspath(path)
    return RunInterrupted(
        f"interrupted (Ctrl-C); last checkpoint: {path} — resume with --resume_checkpoint={path}", checkpoint=path
    )


def _train_and_test(run, saved, write_results, queue):
    config, model, trainer = run.config, run.model, run.trainer
    train_data, valid_data, test_data = run.train_data, run.valid_data, run.test_data
    logger = getLogger()
    if config["resume_checkpoint"]:
        trainer.resume_checkpoint(config["resume_checkpoint"])
    if config["save_per_user"] and not hasattr(getattr(trainer, "eval_collector", None), "last_struct"):
        raise ConfigError(f"save_per_user: trainer {type(trainer).__name__} does not evaluate with recbole_ext's "
                          "collector, so no per-user values can be kept; set save_per_user: False")

    start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=saved, show_progress=config["show_progress"])
    train_seconds = time.perf_counter() - start
    digest = model_digest(model) if not config["single_spec"] else None
    start = time.perf_counter()
    # None for an evaluation-only run (epochs: 0), which writes no checkpoint and evaluates the weights as they are
    checkpoint = _checkpoint_of(trainer) if saved else None
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    eval_seconds = time.perf_counter() - start

    logger.info(set_color("best valid ", "yellow") + f": {format_result(best_valid_result)}")
    logger.info(set_color("test result", "yellow") + f": {format_result(test_result)}")

    result = {
        "model": config["model"],
        "dataset": config["dataset"],
        "run_label": run_label(config),
        "title": run_title(config),
        "best_valid_score": None if best_valid_score is None else float(best_valid_score),
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": plain_metrics(best_valid_result),
        "test_result": plain_metrics(test_result),
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "checkpoint": checkpoint,
    }
    multi_process = distributed.is_distributed(config)
    main_process = distributed.is_main_process(config)
    if multi_process:
        result["rank"] = distributed.rank()
        result["model_digest"] = digest  # after training, per process: equal on all ranks when DDP syncs
        result["world_size"] = distributed.world_size()
        result["dist_backend"] = distributed.backend()
    if write_results and main_process:
        summary = dict(result)
        summary["config"] = ckpt.plain_config(config)
        summary["machine"] = {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
        path = summary_path(config)
        if config["save_per_user"]:
            per_user = write_per_user(run, trainer, test_result, per_user_path(path))
            summary.update(per_user)
            result.update(per_user)
        result["summary_path"] = write_summary(config, summary, path)
        logger.info(set_color("results summary", "yellow") + f": {result['summary_path']}")
    if multi_process:
        distributed.finish()
    if queue is not None:
        queue.put(dict(result))  # for torch.multiprocessing.spawn (no Config: not needed, heavy)
    result["config"] = config
    return result


def _checkpoint_of(trainer):
    """The checkpoint a run's evaluation reads (absolute path), ``None`` when it wrote none."""
    if hasattr(trainer, "checkpoint_file"):
        return trainer.checkpoint_file
    path = getattr(trainer, "saved_model_file", None)  # a trainer without recbole_ext's base (e.g. decision trees)
    return os.path.abspath(path) if path else None


def run_recboles(rank, *args):
    """``torch.multiprocessing.spawn`` entry point, as RecBole's: the last positional argument is the
    keyword dict of :func:`run_recbole`; ``rank`` becomes ``config_dict['local_rank']``."""
    kwargs = dict(args[-1])
    config_dict = dict(kwargs.get("config_dict") or {})
    nproc = int(config_dict.get("nproc") or 1)
    if "OMP_NUM_THREADS" not in os.environ and nproc > 1:
        # processes share this machine's cores: one pool each, no oversubscription
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    config_dict["local_rank"] = rank
    kwargs["config_dict"] = config_dict
    return run_recbole(*args[:-1], **kwargs)


def model_digest(model):
    """SHA-256 of the model's parameters and buffers (bytes, in state_dict order)."""
    import hashlib

    sha = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


def plain_metrics(result):
    """A metric dict as a plain ``{name: float}`` (JSON), ``None`` kept."""
    return None if result is None else {k: None if v is None else float(v) for k, v in result.items()}


def load_data_and_model(model_file):
    """Rebuild config, data and model from a recbole_ext checkpoint (weights-only loading).

    Returns ``(config, model, dataset, train_data, valid_data, test_data)`` like RecBole's function.
    """
    checkpoint = ckpt.load_checkpoint(model_file)
    run = setup_run(config_from_checkpoint(checkpoint), with_trainer=False, checkpoint=checkpoint,
                    checkpoint_file=model_file)
    return run.config, run.model, run.dataset, run.train_data, run.valid_data, run.test_data


def launch(model, dataset, nproc=2, config_dict=None, config_file_list=None, cmd_args=None, ip="127.0.0.1",
           port=None):
    """Run :func:`run_recbole` in ``nproc`` processes on this machine (see
    :func:`recbole_ext.distributed.launch`); return every process's result (``rank``, ``model_digest``,
    metrics, timings), rank order."""
    return distributed.launch(run_recboles, model, dataset, nproc, config_dict=config_dict,
                              config_file_list=config_file_list, cmd_args=cmd_args, ip=ip, port=port)
