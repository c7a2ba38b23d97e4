"""``Config``: RecBole's configurator that also knows recbole_ext's models, defaults and metrics.

Priority, lowest first (as in RecBole): RecBole's internal defaults < recbole_ext's
``properties/overall.yaml`` < ``properties/model/<Name>.yaml`` (the alias's file after its target's)
< ``config_file_list`` < ``config_dict`` < command line.

Nothing read from a file, a checkpoint, a params file or the command line is ever executed: YAML is
read with a safe loader (no Python tags), and string values are parsed by :func:`parse_value`
(Python literals only) where RecBole calls ``eval``. Before anything runs, a user-given key that no
layer knows and that looks like a misspelling of a known key stops the run (``custom_keys`` declares
one's own keys), and nonsensical values (:func:`check_values`) are refused.
"""

import difflib
import logging
import math
import os
import re
import sys

import recbole
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.evaluator import metric_types

from recbole_ext import distributed, options, registry
from recbole_ext.errors import ConfigError, UnknownNameError
from recbole_ext.parsing import SafeYamlLoader, parse_value  # noqa: F401  (re-exported: recbole_ext.config.parse_value)

BUNDLED_DATASETS = {"ml-100k"}
logger = logging.getLogger(__name__)


def running_under_pytest():
    return "PYTEST_CURRENT_TEST" in os.environ or os.path.basename(sys.argv[0]).startswith(("pytest", "py.test"))


# --- safe parsing (recbole_ext.parsing) ------------------------------------------------------------
_KEY_EQUALS_VALUE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*(.*?)\s*$")


def read_config_file(path):
    """A ``key: value`` YAML configuration file as a dict; :class:`ConfigError` naming the file (and the
    line) when it is empty, not YAML, not a mapping, or written as ``key=value`` lines."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not a text (UTF-8) file: {err.reason}") from err
    try:
        content = yaml.load(text, Loader=SafeYamlLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark is not None else path
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem}){_key_equals_value_hint(text)}") from err
    if content is None:
        raise ConfigError(f"config file {path} is empty: write one 'key: value' setting a line, "
                          "or leave the file out of --config_files / config_file_list")
    if not isinstance(content, dict):
        raise ConfigError(f"config file {path} is not a 'key: value' mapping (it holds a "
                          f"{type(content).__name__}){_key_equals_value_hint(text)}")
    bad = [k for k in content if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"config file {path}: keys must be names, got {bad[0]!r}: quote it or rename it")
    return content


def _key_equals_value_hint(text):
    for number, line in enumerate(text.splitlines(), 1):
        match = _KEY_EQUALS_VALUE.match(line)
        if match and not line.lstrip().startswith("#"):
            return (f"; line {number} '{line.strip()}' is in key=value form, which is not read: "
                    f"config files are YAML, write '{match.group(1)}: {match.group(2)}'")
    return ""


# --- value checks ---------------------------------------------------------------------------------
def _whole_number(values, key, low, hint=""):
    value = values[key]
    if isinstance(value, float) and value.is_integer():
        value = values[key] = int(value)  # 1024.0 (a Tune sample) is 1024
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key} must be a whole number >= {low}{hint}, got {value!r}")


def check_values(values):
    """Refuse nonsensical values before anything runs (``values``: the final config dict; integral floats
    of whole-number keys become ints, a ``topk`` number or tuple becomes a list)."""
    _whole_number(values, "train_batch_size", 1)
    _whole_number(values, "eval_batch_size", 1)
    _whole_number(values, "epochs", 0, " (0 = no training, evaluate only)")
    _whole_number(values, "eval_step", 0, " (0 = no validation: the last epoch is kept)")
    _whole_number(values, "stopping_step", 0, " (validations without improvement before stopping, 0 = stop at "
                                               "the first; to never stop early, set it >= epochs)")
    rate = values["learning_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate < 0:
        raise ConfigError(f"learning_rate must be a finite number >= 0, got {rate!r}")
    topk = values["topk"]
    topk = list(topk) if isinstance(topk, (list, tuple)) else [topk]
    if not topk or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in topk):
        raise ConfigError(f"topk must be a whole number >= 1 or a list of them (e.g. [10, 20]), got {values['topk']!r}")
    values["topk"] = topk
    name, _, cut = str(values["valid_metric"]).partition("@")
    if cut and (not cut.isdigit() or int(cut) not in topk):
        raise ConfigError(f"valid_metric '{values['valid_metric']}' needs @{cut} among topk {topk}: "
                          f"add {cut} to topk or use {name}@{topk[0]}")
    if values["model"] == "KD_DAGFM" and values["teacher"] not in ("CrossNet", "CIN"):
        raise ConfigError(f"KD_DAGFM: teacher must be one of ['CrossNet', 'CIN'], got {values['teacher']!r}")


class Config(RecBoleConfig):
    """RecBole ``Config`` with recbole_ext name resolution and package defaults.

    Args (beyond RecBole's):
        cmd_args: the command-line arguments to read (``--key=value``). ``None`` reads ``sys.argv``
            unless running under pytest, whose own arguments must not become configuration.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None):
        if cmd_args is None and running_under_pytest():
            cmd_args = []
        self._cmd_args = cmd_args
        for path in config_file_list or []:
            if not os.path.isfile(path):
                raise ConfigError(f"config file not found: {path} (given in config_file_list / --config_files)")
        super().__init__(model, dataset, config_file_list, config_dict)

    # --- reading: YAML files, config_dict, command line (nothing is executed) --------------------------
    def _build_yaml_loader(self):
        return SafeYamlLoader

    def _convert_config_dict(self, config_dict):
        bad = [key for key in config_dict if not isinstance(key, str)]
        if bad:
            raise ConfigError(f"config_dict keys must be option names (strings), got {bad[0]!r}")
        return {key: parse_value(value) for key, value in config_dict.items()}

    def _load_config_files(self, file_list):
        values, self._key_files = {}, {}
        for path in file_list or []:
            content = read_config_file(path)
            values.update(content)
            self._key_files.update(dict.fromkeys(content, path))
        return values

    def _load_cmd_line(self):
        """``--key=value`` arguments (``cmd_args``, else ``sys.argv``) parsed by :func:`parse_value`; a key
        given twice with different values is a :class:`ConfigError`."""
        if self._cmd_args is not None:
            args = list(self._cmd_args)
        else:
            args = [] if "ipykernel_launcher" in sys.argv[0] else sys.argv[1:]
        texts, ignored = {}, []
        for arg in args:
            if not arg.startswith("--") or "=" not in arg:
                ignored.append(arg)
                continue
            key, text = arg[2:].split("=", 1)
            if key in texts and texts[key] != text:
                raise ConfigError(f"--{key} is given twice with different values ('{texts[key]}' and '{text}'): "
                                  "keep one")
            texts[key] = text
        if ignored:
            logger.warning("command line arguments not used (not --key=value): %s", " ".join(ignored))
        return self._convert_config_dict(texts)

    # --- misspelt keys ------------------------------------------------------------------------------
    def _check_keys(self):
        """A user-given key that no layer knows: an error when it is close to a known key (a misspelling,
        e.g. ``epoch`` for ``epochs``), otherwise listed in one warning. ``custom_keys`` declares one's own."""
        declared = self["custom_keys"] or []
        if isinstance(declared, str):
            declared = [declared]
        if not isinstance(declared, (list, tuple)) or not all(isinstance(k, str) for k in declared):
            raise ConfigError(f"custom_keys must be a list of key names, e.g. [my_key], got {declared!r}")
        known = options.known_keys() | set(self.internal_config_dict) | set(declared)
        unknown = [k for k in self.external_config_dict if k not in known]
        misspelt = {}
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.8) if len(key) >= 4 else []
            if close:
                misspelt[key] = close
        if misspelt:
            lines = [f"unknown config key '{k}' ({self._key_source(k)}): did you mean "
                     f"{' or '.join(repr(c) for c in close)}?" for k, close in misspelt.items()]
            raise ConfigError(" ".join(lines) + " Fix the spelling, or, if it is your own key, declare it: "
                              f"custom_keys: [{', '.join(misspelt)}]")
        if unknown:
            logger.warning("config keys that no default file defines (used only by code that reads them; "
                           "declare them with custom_keys to silence this): %s",
                           ", ".join(f"{k} ({self._key_source(k)})" for k in unknown))

    def _key_source(self, key):
        if key in self.cmd_config_dict:
            return "command line"
        if key in self.variable_config_dict:
            return "config_dict"
        return f"config file {self._key_files.get(key, '?')}"

    # --- device / distributed ----------------------------------------------------------------------
    def _init_device(self):
        """RecBole's ``Config._init_device`` for one process; a multi-process run (the launcher sets
        ``local_rank``, ``world_size``, ``ip``, ``port``, ``offset``, ``nproc``) joins its process group
        through :func:`recbole_ext.distributed.init_process` (selectable backend, CPU training on Gloo)."""
        if "local_rank" not in self.final_config_dict:
            return super()._init_device()
        distributed.init_process(self.final_config_dict)

    # --- model resolution -----------------------------------------------------------------------
    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise ConfigError(
                    "no model given: pass --model=NAME, or set 'model' in a config file or config_dict"
                )
        if isinstance(model, str):
            final_model, final_model_class = model, registry.get_model(model)
        else:
            final_model, final_model_class = model.__name__, model
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise ConfigError(
                    "no dataset given: pass --dataset=NAME, or set 'dataset' in a config file or config_dict"
                )
        return final_model, final_model_class, dataset

    # --- defaults -------------------------------------------------------------------------------
    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        external = self.external_config_dict
        for path in options.defaults_files(model, model_class, external.get("trainer"), external.get("rerank")):
            self._update_internal_config_dict(path)

    def _set_default_parameters(self):
        self._check_keys()
        self._check_metric_names()
        self.final_config_dict["model"] = self.model
        check_values(self.final_config_dict)
        super()._set_default_parameters()
        self.final_config_dict["data_path"] = self._resolve_data_path()

    def _set_train_neg_sample_args(self):
        super()._set_train_neg_sample_args()
        from recbole.utils import InputType

        if (
            self.final_config_dict.get("MODEL_INPUT_TYPE") == InputType.PAIRWISE
            and self.final_config_dict["train_neg_sample_args"]["distribution"] == "none"
        ):
            raise ConfigError(
                f"model '{self.model}' trains on (positive, negative) pairs but train_neg_sample_args is None: "
                "set train_neg_sample_args: {distribution: uniform, sample_num: 1} (RecBole's default)"
            )

    def _check_metric_names(self):
        metrics = self.final_config_dict.get("metrics") or []
        if isinstance(metrics, str):
            metrics = [metrics]
        for metric in metrics:
            if metric.lower() not in metric_types:
                raise UnknownNameError(
                    registry.unknown_message("metric", metric, sorted(metric_types))
                    + ". Metric names are case-insensitive; set them in 'metrics: [...]'"
                )
        valid_metric = str(self.final_config_dict.get("valid_metric", "")).split("@")[0]
        if valid_metric and valid_metric.lower() not in metric_types:
            raise UnknownNameError(
                registry.unknown_message("valid_metric", valid_metric, sorted(metric_types))
            )
        if valid_metric and valid_metric.lower() not in {m.lower() for m in metrics}:
            raise ConfigError(
                f"valid_metric '{self.final_config_dict['valid_metric']}' is not computed: add "
                f"'{valid_metric}' to metrics ({', '.join(metrics)}) or choose valid_metric among them"
            )

    def _resolve_data_path(self):
        """``<data_path>/<dataset>``; for a bundled dataset with no local copy, RecBole's wheel copy."""
        base = self.external_config_dict.get("data_path", self.internal_config_dict.get("data_path", "dataset/"))
        user_path = os.path.join(base, self.dataset)
        if self.dataset in BUNDLED_DATASETS and not os.path.isfile(
            os.path.join(user_path, f"{self.dataset}.inter")
        ):
            return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", self.dataset)
        return user_path
