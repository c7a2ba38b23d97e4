"""``run_recbole`` and ``load_data_and_model`` for recbole_ext and RecBole models.

Replaces ``recbole.quick_start`` (never imported: it imports ray, which breaks on NumPy 2).
"""

import json
import os
import platform
import time
from logging import getLogger

import torch
import torch.distributed as dist
from recbole.utils import init_logger, init_seed, set_color

from recbole_ext import checkpoint as ckpt
from recbole_ext.config import Config
from recbole_ext.utils import create_dataset, data_preparation, get_model, get_trainer


def atomic_write_text(path, text):
    ckpt.atomic_write(path, lambda f: f.write(text), mode="w")


def build_model_and_trainer(config, train_data):
    """Instantiate the configured model on ``train_data`` and its (composed) trainer."""
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"], config)(config, model)
    return model, trainer


def write_summary(config, summary):
    """Write ``summary`` as JSON under ``config['results_dir']`` (atomically); return its path."""
    results_dir = config["results_dir"] or os.path.join("saved", "results")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(results_dir, f"{config['model']}-{config['dataset']}-{stamp}-{os.getpid()}.json")
    atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return path


def run_recbole(
    model=None,
    dataset=None,
    config_file_list=None,
    config_dict=None,
    saved=True,
    cmd_args=None,
    write_results=True,
    queue=None,
):
    """Train and evaluate a model, as ``recbole.quick_start.run_recbole`` does.

    Returns a dict with ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``,
    ``test_result`` (RecBole's keys) plus ``train_seconds``, ``eval_seconds``, ``checkpoint``,
    ``summary_path`` and the ``config``.

    Multi-process runs (``config_dict`` holds ``local_rank``, ``world_size``, ``ip``, ``port``, ...;
    see :func:`run_recboles`): only global rank 0 writes the summary (and checkpoints); rank 0 puts
    the result, without the ``config`` object, on ``queue`` when one is given; the process group is
    destroyed at the end, as in RecBole.
    """
    config = Config(
        model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict, cmd_args=cmd_args
    )
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)

    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model, trainer = build_model_and_trainer(config, train_data)
    logger.info(model)
    if config["resume_checkpoint"]:
        trainer.resume_checkpoint(config["resume_checkpoint"])

    start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    train_seconds = time.perf_counter() - start
    digest = model_digest(model) if not config["single_spec"] else None
    start = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    eval_seconds = time.perf_counter() - start

    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")

    result = {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": _plain_number(best_valid_score),
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": _plain_metrics(best_valid_result),
        "test_result": _plain_metrics(test_result),
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "checkpoint": os.path.abspath(trainer.saved_model_file) if saved else None,
    }
    distributed = not config["single_spec"] and dist.is_available() and dist.is_initialized()
    main_process = not distributed or dist.get_rank() == 0
    if distributed:
        result["rank"] = dist.get_rank()
        result["model_digest"] = digest  # after training, per process: equal on all ranks when DDP syncs
        result["world_size"] = dist.get_world_size()
        result["dist_backend"] = dist.get_backend()
    if write_results and main_process:
        summary = dict(result)
        summary["config"] = ckpt.plain_config(config)
        summary["machine"] = {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
        result["summary_path"] = write_summary(config, summary)
        logger.info(set_color("results summary", "yellow") + f": {result['summary_path']}")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    if queue is not None and main_process:
        queue.put(dict(result))  # for torch.multiprocessing.spawn (no Config: not needed, heavy)
    result["config"] = config
    return result


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


def _plain_number(value):
    if value is None:
        return None
    return float(value)


def _plain_metrics(result):
    if result is None:
        return None
    return {k: _plain_number(v) for k, v in result.items()}


def load_data_and_model(model_file):
    """Rebuild config, data and model from a recbole_ext checkpoint (weights-only loading).

    Returns ``(config, model, dataset, train_data, valid_data, test_data)`` like RecBole's function.
    """
    checkpoint = ckpt.load_checkpoint(model_file)
    meta = checkpoint["meta"]
    user_config = {k: v for k, v in checkpoint.get("external_config", {}).items() if k not in ("model", "dataset")}
    config = Config(model=meta["model"], dataset=meta["dataset"], config_dict=user_config, cmd_args=[])
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    ckpt.restore_model(model, checkpoint)
    return config, model, dataset, train_data, valid_data, test_data
