"""``Config``: RecBole's configurator that also knows recbole_ext's models, defaults and metrics.

Priority, lowest first (as in RecBole): RecBole's internal defaults < recbole_ext's
``properties/overall.yaml`` < ``properties/model/<Name>.yaml`` (the alias's file after its target's)
< ``config_file_list`` < ``config_dict`` < command line.
"""

import os
import sys

import recbole
from recbole.config import Config as RecBoleConfig
from recbole.evaluator import metric_types

from recbole_ext import distributed, options, registry
from recbole_ext.errors import ConfigError, UnknownNameError

BUNDLED_DATASETS = {"ml-100k"}


def running_under_pytest():
    return "PYTEST_CURRENT_TEST" in os.environ or os.path.basename(sys.argv[0]).startswith(("pytest", "py.test"))


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

    # --- command line ---------------------------------------------------------------------------
    def _load_cmd_line(self):
        if self._cmd_args is None:
            return super()._load_cmd_line()
        saved = sys.argv
        sys.argv = [saved[0] if saved else "recbole_ext"] + list(self._cmd_args)
        try:
            return super()._load_cmd_line()
        finally:
            sys.argv = saved

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
        self._check_metric_names()
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
