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

from recbole_ext import registry
from recbole_ext.errors import ConfigError, UnknownNameError

BUNDLED_DATASETS = {"ml-100k"}
# keys computed by Config itself: never fed back as user input when a run is rebuilt
DERIVED_KEYS = {
    "MODEL_TYPE",
    "MODEL_INPUT_TYPE",
    "eval_type",
    "device",
    "single_spec",
    "local_rank",
    "valid_neg_sample_args",
    "test_neg_sample_args",
    "valid_metric_bigger",
}
# keys a multi-process launch sets per process (run_recbole.py --nproc / --world_size ...): never
# replayed when a run is rebuilt from its checkpoint or summary
DISTRIBUTED_KEYS = {"local_rank", "nproc", "world_size", "ip", "port", "offset", "dist_backend"}


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
        """RecBole's ``Config._init_device`` with a selectable process-group backend.

        Single process (no ``local_rank`` key): RecBole's behaviour, unchanged. Multi-process (the
        launcher sets ``local_rank``, ``world_size``, ``ip``, ``port``, ``offset``, ``nproc``): RecBole
        hard-codes NCCL + ``cuda:<local_rank>``; here ``dist_backend`` chooses (``nccl`` / ``gloo``;
        default NCCL when CUDA is usable, Gloo otherwise) and a Gloo run without CUDA trains on CPU.
        """
        if "local_rank" not in self.final_config_dict:
            return super()._init_device()
        import torch
        import torch.distributed as dist

        cfg = self.final_config_dict
        gpu_id = cfg.get("gpu_id")
        gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id if gpu_id is not None else "")
        cfg["gpu_id"] = gpu_id
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
        use_cuda = bool(cfg.get("use_gpu", True)) and len(gpu_id) > 0 and torch.cuda.is_available()
        backend = str(cfg.get("dist_backend") or ("nccl" if use_cuda else "gloo")).lower()
        if backend not in ("nccl", "gloo"):
            raise ConfigError(f"dist_backend must be 'nccl' or 'gloo', not '{cfg.get('dist_backend')}'")
        if backend == "nccl" and not use_cuda:
            raise ConfigError(
                "dist_backend 'nccl' needs CUDA GPUs (none usable here): use dist_backend: gloo to train on CPU"
            )
        for key in ("world_size", "ip", "port"):
            if cfg.get(key) is None:
                raise ConfigError(f"multi-process run: '{key}' is not set (run_recbole.py --nproc sets it)")
        local_rank = int(cfg["local_rank"])
        nproc = int(cfg.get("nproc") or 1)
        if use_cuda and len(gpu_id.split(",")) < nproc:
            raise ConfigError(f"--nproc={nproc} processes on CUDA need {nproc} GPUs in gpu_id, got '{gpu_id}'")
        cfg["dist_backend"] = backend
        if not dist.is_initialized():
            dist.init_process_group(
                backend=backend,
                rank=local_rank + int(cfg.get("offset") or 0),
                world_size=int(cfg["world_size"]),
                init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
            )
        if use_cuda:
            cfg["device"] = torch.device("cuda", local_rank)
            torch.cuda.set_device(local_rank)
        else:
            cfg["device"] = torch.device("cpu")
        cfg["single_spec"] = False
        if local_rank != 0:
            cfg["state"] = "error"
            cfg["show_progress"] = False
            cfg["verbose"] = False

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
        self._update_internal_config_dict(os.path.join(registry.PROPERTIES_DIR, "overall.yaml"))
        names = [model_class.__name__]
        if model != model_class.__name__:
            names.append(model)  # alias defaults on top of the target model's
        for name in names:
            path = os.path.join(registry.PROPERTIES_DIR, "model", f"{name}.yaml")
            if os.path.isfile(path):
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
                    registry._unknown_message("metric", metric, sorted(metric_types))
                    + ". Metric names are case-insensitive; set them in 'metrics: [...]'"
                )
        valid_metric = str(self.final_config_dict.get("valid_metric", "")).split("@")[0]
        if valid_metric and valid_metric.lower() not in metric_types:
            raise UnknownNameError(
                registry._unknown_message("valid_metric", valid_metric, sorted(metric_types))
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

    def user_config(self):
        """The user-given configuration (files, dict, command line) — enough to rebuild this Config."""
        return dict(self.external_config_dict)
