"""Name tables: models, aliases, trainers, re-rankers and dataset classes — recbole_ext first, RecBole's otherwise.

Each table maps a name to ``"module:Class"``; the module is imported when the name is first resolved,
so what a name means never depends on which modules happen to have been imported (layer 2: this
module imports nothing of recbole_ext above :mod:`errors`). An *alias* is a name that builds another
model with extra defaults (``BaM_REMI`` → ``REMI`` plus ``properties/model/BaM_REMI.yaml``).
Users add their own entries with :func:`register_model`, :func:`register_trainer` or the
:func:`register_reranker` decorator.
"""

import difflib
import importlib
import importlib.util
import os

import recbole

from recbole_ext import compat
from recbole_ext.errors import UnknownNameError

_MODELS = "recbole_ext.model"
MODELS = {
    "GFCF": f"{_MODELS}.general_recommender.gfcf:GFCF",
    "TwoTower": f"{_MODELS}.general_recommender.twotower:TwoTower",
    "MIND": f"{_MODELS}.sequential_recommender.mind:MIND",
    "ComiRec": f"{_MODELS}.sequential_recommender.comirec:ComiRec",
    "REMI": f"{_MODELS}.sequential_recommender.remi:REMI",
    "NextItNetP": f"{_MODELS}.sequential_recommender.nextitnetp:NextItNetP",
    "GRec": f"{_MODELS}.sequential_recommender.grec:GRec",
    "PeterRec": f"{_MODELS}.sequential_recommender.peterrec:PeterRec",
}
# alias name -> name of the model class it builds (its defaults: properties/model/<alias>.yaml)
MODEL_ALIASES = {"BaM_MIND": "MIND", "BaM_ComiRec": "ComiRec", "BaM_REMI": "REMI"}
TRAINERS = {
    "BaM": "recbole_ext.trainer.bam:BaMTrainer",
    "CaliTune": "recbole_ext.trainer.calitune:CaliTuneTrainer",
    "MoRec": "recbole_ext.trainer.morec:MoRecTrainer",
    "PeterRec": "recbole_ext.trainer.peterrec:PeterRecTrainer",
}
RERANKERS = {"cp": "recbole_ext.trainer.cp:CPReranker"}
# model name -> its dataset class (models not listed use RecBole's choice, with our atomic-file checks)
DATASETS = {
    "NextItNetP": "recbole_ext.data.peterrec_data:NextItNetPDataset",
    "GRec": "recbole_ext.data.peterrec_data:GRecDataset",
}
_RECBOLE_MODEL_PACKAGES = ("general_recommender", "context_aware_recommender", "sequential_recommender",
                           "knowledge_aware_recommender", "exlib_recommender")


def _load(entry):
    """A class from a table entry (a class, or ``"module:Class"``)."""
    if isinstance(entry, type):
        return entry
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def register_model(name, target):
    """Make ``name`` build ``target`` (a model class or ``"module:Class"``)."""
    MODELS[name] = target


def register_trainer(name, target):
    """Make ``trainer: name`` (or ``nameTrainer``) use ``target`` (a trainer class or ``"module:Class"``)."""
    TRAINERS[name[: -len("Trainer")] if name.endswith("Trainer") else name] = target


def register_reranker(name):
    """Class decorator: make ``rerank: name`` use the decorated re-ranker class."""

    def decorator(cls):
        RERANKERS[name.lower()] = cls
        cls.name = name.lower()
        return cls

    return decorator


def resolve_alias(name):
    """The model name that ``name`` builds (itself unless it is an alias)."""
    return MODEL_ALIASES.get(name, name)


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------
def find_model(name):
    """The model class for ``name`` (ours first, then RecBole's), or ``None``."""
    target = resolve_alias(name)
    if target in MODELS:
        return _load(MODELS[target])
    compat.require_optional_packages(target)  # e.g. NCL without faiss: say so, not "unknown model"
    for package in _RECBOLE_MODEL_PACKAGES:
        full = f"recbole.model.{package}.{target.lower()}"
        try:
            spec = importlib.util.find_spec(full)
        except ImportError:  # exlib_recommender needs optional xgboost / lightgbm
            spec = None
        if spec is not None:
            module = importlib.import_module(full)
            if hasattr(module, target):
                return getattr(module, target)
    return None


def get_model(model_name):
    """Return the model class of ``model_name``; an unknown name lists the closest known ones."""
    if not isinstance(model_name, str):
        return model_name
    model_class = find_model(model_name)
    if model_class is None:
        raise UnknownNameError(unknown_message("model", model_name, available_model_names()))
    return model_class


def recbole_model_names():
    model_dir = os.path.join(os.path.dirname(recbole.__file__), "properties", "model")
    return sorted(f[: -len(".yaml")] for f in os.listdir(model_dir) if f.endswith(".yaml"))


def available_model_names():
    return sorted(set(MODELS) | set(MODEL_ALIASES) | set(recbole_model_names()))


def unknown_message(kind, name, candidates):
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=5, cutoff=0.5)
    hint = ", ".join(lowered[c] for c in close) if close else "none"
    return f"unknown {kind} '{name}'. Closest matches: {hint}. Known {kind}s: {', '.join(candidates)}"


def dataset_class(model_name):
    """Our dataset class for ``model_name``, or ``None``."""
    entry = DATASETS.get(resolve_alias(model_name))
    return _load(entry) if entry is not None else None


# ------------------------------------------------------------------------------------------------
# trainers and re-rankers
# ------------------------------------------------------------------------------------------------
def find_trainer(name):
    """Trainer class by name (``MoRec`` or ``MoRecTrainer``): recbole_ext first, then RecBole."""
    import recbole.trainer as recbole_trainer

    short = name[: -len("Trainer")] if name.endswith("Trainer") else name
    if short in TRAINERS:
        return _load(TRAINERS[short])
    for candidate in ([name] if name.endswith("Trainer") else [name + "Trainer", name]):
        obj = getattr(recbole_trainer, candidate, None)
        if isinstance(obj, type):
            return obj
    return None


def available_trainer_names():
    import recbole.trainer as recbole_trainer

    names = {f"{n}Trainer" for n in TRAINERS}
    names.update(n for n in dir(recbole_trainer) if n.endswith("Trainer") and isinstance(getattr(recbole_trainer, n), type))
    return sorted(names)


def get_trainer_class(model_type, model_name, config=None, model_class=None):
    """The trainer class for a run, before recbole_ext's evaluation extensions are mixed in.

    Order: the ``trainer`` config key; the model class's ``trainer_name`` attribute;
    ``<Model>Trainer`` in recbole_ext; RecBole's own choice (``<Model>Trainer`` or by model type).
    """
    from recbole.utils import get_trainer as recbole_get_trainer

    explicit = config["trainer"] if config is not None else None
    if explicit:
        trainer = find_trainer(str(explicit))
        if trainer is None:
            raise UnknownNameError(unknown_message("trainer", str(explicit), available_trainer_names()))
        return trainer
    model_class = model_class or find_model(model_name)
    declared = getattr(model_class, "trainer_name", None)
    if declared:
        trainer = find_trainer(declared)
        if trainer is None:
            raise UnknownNameError(f"model '{model_name}' declares trainer '{declared}', which does not exist")
        return trainer
    target = resolve_alias(model_name)
    if target in TRAINERS:
        return _load(TRAINERS[target])
    return recbole_get_trainer(model_type, target)


def find_reranker(name):
    """Re-ranker class by (case-insensitive) name; unknown → :class:`UnknownNameError`."""
    entry = RERANKERS.get(str(name).lower())
    if entry is None:
        known = ", ".join(sorted(RERANKERS)) or "none registered"
        raise UnknownNameError(f"unknown re-ranker '{name}' (config key 'rerank'); known re-rankers: {known}")
    return _load(entry)
