"""One home for the defaults of our models, trainers and re-rankers, and their validation.

Defaults live only in YAML: ``properties/overall.yaml``, ``properties/model/<Name>.yaml`` (an alias's
file after its target's), ``properties/trainer/<Name>.yaml`` (the ``trainer`` key, else the model's
declared trainer) and ``properties/rerank/<name>.yaml`` (the ``rerank`` key). :class:`recbole_ext.Config`
loads them below the user's files, dict and command line. Code never carries a fallback default: it
reads ``config[key]`` and, for options with a fixed set of values, calls :func:`check_choices`.
"""

import functools
import glob
import os

from recbole_ext.errors import ConfigError

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")


def _short_trainer_name(name):
    name = str(name)
    return name[: -len("Trainer")] if name.endswith("Trainer") else name


def defaults_files(model, model_class, trainer=None, rerank=None):
    """The package's default files for a run, lowest priority first (only those that exist)."""
    names = [("model", name) for name in getattr(model_class, "defaults_from", ())]
    names.append(("model", model_class.__name__))
    if model != model_class.__name__:
        names.append(("model", model))  # alias defaults on top of the target model's
    trainer = trainer or getattr(model_class, "trainer_name", None)
    if trainer:
        names.append(("trainer", _short_trainer_name(trainer)))
    if rerank and str(rerank).lower() not in ("none", "false"):
        names.append(("rerank", str(rerank).lower()))
    paths = [os.path.join(PROPERTIES_DIR, "overall.yaml")]
    paths += [os.path.join(PROPERTIES_DIR, kind, f"{name}.yaml") for kind, name in names]
    return [p for p in paths if os.path.isfile(p)]


def _lookup(config, key):
    try:
        return config[key]
    except KeyError:
        return None


def check_choices(config, choices, owner):
    """Check the options of ``owner`` (a model, trainer or re-ranker name) in one pass.

    ``choices`` maps each option to the tuple of values it accepts (strings compare case-insensitively).
    Returns ``{key: value}`` with string values lower-cased. A missing option or a value outside its
    choices raises :class:`ConfigError` naming the option, the value and what is allowed.
    """
    values = {}
    for key, allowed in choices.items():
        value = _lookup(config, key)
        if value is None:
            raise ConfigError(f"{owner}: option '{key}' is not set; its default lives in the package's "
                              f"properties/ YAML — set '{key}' to one of {list(allowed)}")
        normal = value.lower() if isinstance(value, str) else value
        if normal not in allowed:
            raise ConfigError(f"{owner}: {key} must be one of {list(allowed)}, got {value!r}")
        values[key] = normal
    return values


def fill_missing(config, kind, name):
    """Give ``config`` the defaults of ``properties/<kind>/<name>.yaml`` that it lacks: for an owner switched
    on after the Config was built (``analysis.set_reranker``), so that it sees the same defaults."""
    import yaml

    path = os.path.join(PROPERTIES_DIR, kind, f"{name}.yaml")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for key, value in (yaml.safe_load(f) or {}).items():
                if key not in config:
                    config[key] = value


# --- the keys every layer knows (misspelt-key check of recbole_ext.Config) ---------------------------
# read by RecBole 1.2.1's code without a YAML default, or set by its Config / the launcher
RECBOLE_CODE_KEYS = frozenset({
    "contrast", "eta", "sim", "tail_ratio", "token_num_threshold", "use_filter", "has_residual", "norm", "cin",
    "verbose", "xgb_early_stopping_rounds", "feature_num", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type",
    "device", "single_spec", "encoding", "valid_neg_sample_args", "test_neg_sample_args",
})
# RecBole files that are not configuration (dataset download addresses)
_NOT_CONFIG_FILES = ("url.yaml", "kg_url.yaml")


def _yaml_keys(paths):
    import yaml

    keys = set()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            content = yaml.safe_load(f)
        if isinstance(content, dict):
            keys.update(k for k in content if isinstance(k, str))
    return keys


@functools.lru_cache(maxsize=None)
def _recbole_keys():
    import recbole
    from recbole.utils import argument_list

    root = os.path.join(os.path.dirname(recbole.__file__), "properties")
    paths = [p for p in glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True)
             if os.path.basename(p) not in _NOT_CONFIG_FILES]
    keys = _yaml_keys(paths) | RECBOLE_CODE_KEYS
    for name in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        keys.update(getattr(argument_list, name))
    return frozenset(keys)


def known_keys():
    """Every configuration key that some layer defines: RecBole's defaults (overall, dataset, model and
    quick-start YAML files, its argument lists, the keys its code reads), every YAML file of ours
    (``properties/**``), the launch keys and ``model``, ``dataset``, ``config_files``, ``custom_keys``."""
    from recbole_ext.distributed import LAUNCH_KEYS

    ours = _yaml_keys(glob.glob(os.path.join(PROPERTIES_DIR, "**", "*.yaml"), recursive=True))
    return _recbole_keys() | ours | LAUNCH_KEYS | {"model", "dataset", "config_files", "custom_keys"}
