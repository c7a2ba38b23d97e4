"""Weights-only-safe, atomically written checkpoints.

A recbole_ext checkpoint is a plain dictionary that ``torch.load(path, weights_only=True)`` reads
without any allow-listing:

* ``state_dict`` — the model's tensors;
* ``other_parameter`` — non-parameter model state (EASE's matrices, GF-CF's filters, ...), encoded so
  that NumPy arrays and SciPy sparse matrices become tagged dictionaries of tensors; without the
  prediction caches of :data:`MODEL_CACHE_ATTRIBUTES` (derived from the weights; cleared on loading);
* ``config`` — the final configuration as plain Python values (enums and devices as strings);
* ``external_config`` — the user-given configuration (files, dict, command line), from which
  :func:`recbole_ext.quick_start.load_data_and_model` rebuilds the exact same ``Config``;
* ``epoch``, ``cur_step``, ``best_valid_score``, ``best_valid_result``, ``optimizer`` — what resuming needs;
* ``rng`` — the random-number states (python, NumPy, torch, CUDA, the training loader's generator), so that
  a resumed run continues exactly as the uninterrupted run would have (:func:`rng_state`);
* ``meta`` — format name and version, library versions, creation time, model, dataset and the
  fingerprint of the train/valid/test split (``split_fingerprint``, see
  :func:`recbole_ext.data.utils.split_fingerprint`), checked by :func:`check_same_data` wherever a
  checkpoint meets a run's data.

Files are written atomically by :func:`recbole_ext.io.atomic_torch_save` (a temporary file renamed into
place), so a crash never leaves a half-written checkpoint behind.
"""

import os
import pickle
import random
import time
import warnings
import zipfile
from logging import getLogger

import numpy as np
import torch

from recbole_ext.distributed import LAUNCH_KEYS
from recbole_ext.codec import decode, encode, plain  # noqa: F401  (encode/decode re-exported)
from recbole_ext.errors import CheckpointError

FORMAT_NAME = "recbole_ext.checkpoint"
FORMAT_VERSION = 2  # 2: meta.split_fingerprint and rng


def plain_config(config):
    """The final configuration of a RecBole ``Config`` as plain, JSON-friendly values."""
    final = getattr(config, "final_config_dict", config)
    return {k: plain(v) for k, v in final.items()}


# --------------------------------------------------------------------------------------------
# what models derive from their weights between predictions
# --------------------------------------------------------------------------------------------
#: The attributes in which RecBole 1.2.1's models keep what they compute from their weights for
#: ``full_sort_predict`` (filled there, cleared only in ``calculate_loss``): ``restore_user_e`` /
#: ``restore_item_e`` (LightGCN, NGCF, SGL, NCL, DGCF, SpectralCF, MCCLK), ``restore_entity_e`` (KGAT, KGIN,
#: MCCLK), ``i_embedding`` (DMF's item tower). A value computed before the weights changed (an optimiser step
#: outside ``calculate_loss``, loading a checkpoint) is stale: the next prediction would score the old model.
MODEL_CACHE_ATTRIBUTES = ("restore_user_e", "restore_item_e", "restore_entity_e", "i_embedding")


def clear_model_caches(model):
    """Set every attribute of :data:`MODEL_CACHE_ATTRIBUTES` that ``model`` holds to ``None`` (the model
    recomputes it from its current weights on the next prediction); returns the names cleared. Weights or
    buffers that happen to carry such a name are left alone."""
    cleared = []
    for name in MODEL_CACHE_ATTRIBUTES:
        if getattr(model, name, None) is None:
            continue
        if isinstance(getattr(model, name), torch.nn.Module) or name in getattr(model, "_parameters", {}) or (
            name in getattr(model, "_buffers", {})
        ):
            continue
        setattr(model, name, None)
        cleared.append(name)
    return cleared


def _model_state(model):
    """``model.other_parameter()`` without the caches of :data:`MODEL_CACHE_ATTRIBUTES` (not state: derived
    from the weights, recomputed after loading)."""
    other = model.other_parameter()
    if not other:
        return other
    return {k: v for k, v in other.items() if k not in MODEL_CACHE_ATTRIBUTES}


# --------------------------------------------------------------------------------------------
# writing and reading
# --------------------------------------------------------------------------------------------
def build_state(trainer, epoch):
    """The checkpoint dictionary of a RecBole ``Trainer`` at ``epoch``."""
    import recbole

    config = trainer.config
    best = trainer.best_valid_score
    return {
        "meta": {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "recbole_version": str(recbole.__version__),
            "torch_version": str(torch.__version__),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "model": config["model"],
            "dataset": config["dataset"],
            "trainer": type(trainer).__name__,
            "split_fingerprint": plain(config["split_fingerprint"]),
        },
        "config": plain_config(config),
        # without the per-process launch keys (local_rank, world_size, ...): a checkpoint written by a
        # multi-process run reloads in a single process
        "external_config": plain_config(
            {k: v for k, v in getattr(config, "external_config_dict", {}).items() if k not in LAUNCH_KEYS}
        ),
        "epoch": int(epoch),
        "cur_step": int(trainer.cur_step),
        "best_valid_score": float(best) if best is not None else None,
        "best_valid_result": plain(_best_valid_result(trainer)),
        "state_dict": {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()},
        "other_parameter": encode(_model_state(trainer.model)),
        "optimizer": trainer.optimizer.state_dict() if getattr(trainer, "optimizer", None) else None,
        "rng": rng_state(trainer.rng_generators() if hasattr(trainer, "rng_generators") else None),
    }


def _best_valid_result(trainer):
    """The validation result of ``best_valid_score``. RecBole saves a better epoch *before* it stores that
    epoch's result as ``best_valid_result``: take the result of the validation just run when it is the best."""
    last = getattr(trainer, "last_valid", None)
    if last is not None and trainer.best_valid_score is not None and last[0] == trainer.best_valid_score:
        return dict(last[1])
    result = getattr(trainer, "best_valid_result", None)
    return None if result is None else dict(result)


# --------------------------------------------------------------------------------------------
# random-number states (exact resume)
# --------------------------------------------------------------------------------------------
def rng_state(generators=None):
    """Every random-number state a run draws from, as tensors and plain values (weights-only safe):
    python ``random``, NumPy's global state (RecBole's negative samplers), torch's CPU and CUDA
    states, and ``generators`` (name -> ``torch.Generator``, e.g. the training loader's shuffle)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return {
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "generators": {k: g.get_state() for k, g in (generators or {}).items() if g is not None},
    }


def restore_rng(state, generators=None):
    """Set the states :func:`rng_state` recorded (``generators`` by name; unknown names are skipped)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].cpu().numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    saved = state.get("generators") or {}
    for name, generator in (generators or {}).items():
        if generator is not None and name in saved:
            generator.set_state(saved[name].cpu())


# --------------------------------------------------------------------------------------------
# the data a checkpoint was trained on
# --------------------------------------------------------------------------------------------
def check_same_data(checkpoint, config, path, action):
    """Refuse (:class:`CheckpointError`) a checkpoint whose dataset or train/valid/test split differs from
    this run's — its numbers would be measured on rows it was trained on. ``action`` completes "cannot
    ... <path>" (e.g. "resume from"). A checkpoint written before splits were recorded, or a run whose
    split is unknown, is accepted with a warning."""
    meta = checkpoint["meta"]
    if meta.get("dataset") != config["dataset"]:
        raise CheckpointError(
            f"cannot {action} {path}: it was trained on dataset '{meta.get('dataset')}', this run uses "
            f"'{config['dataset']}'"
        )
    saved, current = meta.get("split_fingerprint"), config["split_fingerprint"]
    if not saved:
        return _warn(
            f"{path} records no train/valid/test split (written before recbole_ext checkpoint format 2): it is "
            "not checked that this run uses the split the checkpoint was trained on, and its numbers are only "
            "valid if it does. Re-train it to get this check."
        )
    if not current:
        return _warn(
            f"this run's train/valid/test split is unknown (its data was not prepared by "
            f"recbole_ext.data_preparation): it is not checked that {path} was trained on the same split"
        )
    if saved["sha256"] == current["sha256"]:
        return None
    differences = [] if saved.get("vocab") == current.get("vocab") else [
        "the user/item vocabulary differs (other data files or filters)"]
    for part in ("train", "valid", "test"):
        before, now = saved[part], current[part]
        if before["sha256"] != now["sha256"]:
            same = " (same size, other rows)" if before["rows"] == now["rows"] else ""
            differences.append(f"{part}: {before['rows']} rows in the checkpoint, {now['rows']} here{same}")
    raise CheckpointError(
        f"cannot {action} {path}: it was trained on another data split of '{config['dataset']}' — "
        + "; ".join(differences)
        + ". Use the checkpoint's data settings and seed; a script must call init_seed(config['seed'], "
        "config['reproducibility']) before data_preparation (quick_start.setup_run does both)"
    )


def _warn(message):
    getLogger().warning(message)
    warnings.warn(message, stacklevel=3)


def load_checkpoint(path, map_location="cpu"):
    """Read a recbole_ext checkpoint with ``weights_only=True``; raise :class:`CheckpointError`
    with the reason if the file is missing, truncated, not a checkpoint, or not ours."""
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        text = str(err)
        if "Unsupported operand" in text or "Weights only load failed" in text:
            raise CheckpointError(
                f"{path} is not a recbole_ext checkpoint: it holds pickled objects that cannot be "
                "loaded safely (stock RecBole saves its whole Config with pickle protocol 4). "
                "Re-train the model with recbole_ext (run_recbole.py) to get a safe checkpoint."
            ) from err
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a torch checkpoint ({text})"
        ) from err
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path} is not a recbole_ext checkpoint (no '{FORMAT_NAME}' metadata); "
            "only files written by recbole_ext trainers can be loaded"
        )
    if meta.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer recbole_ext (format {meta['version']} > {FORMAT_VERSION}); "
            "upgrade recbole_ext to read it"
        )
    for key in ("state_dict", "config"):
        if key not in checkpoint:
            raise CheckpointError(f"{path} is missing its '{key}' entry; the checkpoint is incomplete")
    return checkpoint


def restore_model(model, checkpoint):
    """Load weights and non-parameter state of ``checkpoint`` into ``model``; clear its prediction caches
    (:func:`clear_model_caches`)."""
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint of model '{checkpoint['meta'].get('model')}' on dataset "
            f"'{checkpoint['meta'].get('dataset')}' does not fit this model: {err}. "
            "Check that the model name, its size options and the dataset match the checkpoint."
        ) from err
    other = checkpoint.get("other_parameter")
    if other:
        model.load_other_parameter(decode(other))
    # a cache computed before loading (or stored in a checkpoint written before caches were left out) is stale
    clear_model_caches(model)


def load_pretrained(model, path, config=None, checkpoint=None):
    """Initialise ``model`` from the recbole_ext checkpoint at ``path`` (a trained backbone; ``checkpoint``:
    its contents when the caller has read them already).

    Checks that the checkpoint's dataset and train/valid/test split are the current run's
    (:func:`check_same_data`, when ``config`` is given) and that its item / user tables have the
    current sizes, and says which one differs otherwise.
    Returns the checkpoint dictionary (its ``config`` holds the backbone's hyperparameters).
    """
    if not path:
        raise CheckpointError(
            "no pretrained checkpoint given: set pretrained_model_file to a checkpoint written by "
            "run_recbole.py (saved/<Model>-<time>-<pid>.pth)"
        )
    if checkpoint is None:
        checkpoint = load_checkpoint(path, map_location=next(model.parameters()).device)
    if config is not None:
        check_same_data(checkpoint, config, path, "start from")
    saved = checkpoint["state_dict"]
    current = model.state_dict()
    for name, tensor in current.items():
        if name in saved and tuple(saved[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: parameter '{name}' has shape {tuple(saved[name].shape)} in the checkpoint but "
                f"{tuple(tensor.shape)} here — the item/user counts or embedding size differ "
                "(checkpoint from another dataset split or model size?)"
            )
    restore_model(model, checkpoint)
    return checkpoint
