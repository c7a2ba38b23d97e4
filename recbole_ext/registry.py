"""Name resolution for models and trainers: recbole_ext first, RecBole's otherwise.

Models live one per module in ``recbole_ext.model.<type>_recommender.<name.lower()>`` (RecBole's own
convention), so adding a model needs no registration. An *alias* is a name that resolves to another
model class with extra defaults (e.g. ``BaM_REMI`` → ``REMI`` plus ``properties/model/BaM_REMI.yaml``).
"""

import difflib
import importlib
import importlib.util
import os
import pkgutil

import recbole

from recbole_ext.errors import UnknownNameError

MODEL_PACKAGES = (
    "recbole_ext.model.general_recommender",
    "recbole_ext.model.sequential_recommender",
    "recbole_ext.model.context_aware_recommender",
)
PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")

# alias name -> name of the model class it builds
MODEL_ALIASES = {}


def register_model_alias(alias, target):
    """Make ``alias`` build ``target`` (a model name) with the defaults of ``properties/model/<alias>.yaml``."""
    MODEL_ALIASES[alias] = target


def resolve_alias(name):
    """The model name that ``name`` builds (itself unless it is an alias)."""
    return MODEL_ALIASES.get(name, name)


def _find_ext_model(name):
    module_name = name.lower()
    for package in MODEL_PACKAGES:
        full = f"{package}.{module_name}"
        try:
            spec = importlib.util.find_spec(full)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            continue
        module = importlib.import_module(full)
        if hasattr(module, name):
            return getattr(module, name)
        for attr in dir(module):  # tolerate case differences (bpr -> BPR)
            if attr.lower() == module_name and isinstance(getattr(module, attr), type):
                return getattr(module, attr)
    return None


def find_model(name):
    """The model class for ``name`` (ours first, then RecBole's), or ``None``."""
    target = resolve_alias(name)
    model_class = _find_ext_model(target)
    if model_class is not None:
        return model_class
    for package in (
        "general_recommender",
        "context_aware_recommender",
        "sequential_recommender",
        "knowledge_aware_recommender",
        "exlib_recommender",
    ):
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
        raise UnknownNameError(_unknown_message("model", model_name, available_model_names()))
    return model_class


def ext_model_names():
    names = set(MODEL_ALIASES)
    for package in MODEL_PACKAGES:
        try:
            module = importlib.import_module(package)
        except ModuleNotFoundError:
            continue
        for info in pkgutil.iter_modules(module.__path__):
            sub = importlib.import_module(f"{package}.{info.name}")
            for attr in dir(sub):
                obj = getattr(sub, attr)
                if attr.lower() == info.name and isinstance(obj, type):
                    names.add(attr)
    return sorted(names)


def recbole_model_names():
    model_dir = os.path.join(os.path.dirname(recbole.__file__), "properties", "model")
    return sorted(f[: -len(".yaml")] for f in os.listdir(model_dir) if f.endswith(".yaml"))


def available_model_names():
    return sorted(set(ext_model_names()) | set(recbole_model_names()))


def _unknown_message(kind, name, candidates):
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=5, cutoff=0.5)
    hint = ", ".join(lowered[c] for c in close) if close else "none"
    return (
        f"unknown {kind} '{name}'. Closest matches: {hint}. "
        f"Known {kind}s: {', '.join(candidates)}"
    )


# ------------------------------------------------------------------------------------------------
# trainers
# ------------------------------------------------------------------------------------------------
def find_trainer(name):
    """Trainer class by name (``MoRec`` or ``MoRecTrainer``): recbole_ext first, then RecBole."""
    import recbole.trainer as recbole_trainer

    import recbole_ext.trainer as ext_trainer

    candidates = [name] if name.endswith("Trainer") else [name + "Trainer", name]
    for module in (ext_trainer, recbole_trainer):
        for candidate in candidates:
            obj = getattr(module, candidate, None)
            if isinstance(obj, type):
                return obj
    return None


def available_trainer_names():
    import recbole.trainer as recbole_trainer

    import recbole_ext.trainer as ext_trainer

    names = set()
    for module in (ext_trainer, recbole_trainer):
        names.update(n for n in dir(module) if n.endswith("Trainer") and isinstance(getattr(module, n), type))
    return sorted(names)


def get_trainer_class(model_type, model_name, config=None):
    """The trainer class for a run, before recbole_ext's evaluation extensions are mixed in.

    Order: the ``trainer`` config key; the model class's ``trainer_name`` attribute;
    ``<Model>Trainer`` in recbole_ext; RecBole's own choice (``<Model>Trainer`` or by model type).
    """
    from recbole.utils import get_trainer as recbole_get_trainer

    explicit = config["trainer"] if config is not None else None
    if explicit:
        trainer = find_trainer(str(explicit))
        if trainer is None:
            raise UnknownNameError(_unknown_message("trainer", str(explicit), available_trainer_names()))
        return trainer
    model_class = find_model(model_name)
    declared = getattr(model_class, "trainer_name", None)
    if declared:
        trainer = find_trainer(declared)
        if trainer is None:
            raise UnknownNameError(
                f"model '{model_name}' declares trainer '{declared}', which does not exist"
            )
        return trainer
    import recbole_ext.trainer as ext_trainer

    own = getattr(ext_trainer, resolve_alias(model_name) + "Trainer", None)
    if isinstance(own, type):
        return own
    return recbole_get_trainer(model_type, resolve_alias(model_name))
