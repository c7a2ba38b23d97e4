"""The one place where recbole_ext patches RecBole 1.2.1 for today's stack (NumPy 2, pandas 3,
SciPy >= 1.13, torch >= 2.6) — stack fixes only: of recbole_ext it imports only the layer-0 parser
(``recbole_ext.parsing`` for C17, ``recbole_ext.codec`` for C14).

Every patch names the RecBole function it fixes and why, is idempotent (applying twice changes
nothing) and is applied once by :func:`apply` when ``recbole_ext`` is imported — before any
``Config`` is built. See ``shared/specs/recbole-plugin-and-compat.md`` §4 for the analysis; the ids
C1 ... C13 below refer to it; C14 ... C16 (RecBole's own checkpoints, ``recbole.quick_start``, pickled
data files) are described in ``docs/recbole.md``. ``PATCHES`` lists what was applied. What recbole_ext's own trainers do
differently from RecBole's (weights-only checkpoints, formerly C3; DDP on CPU, formerly C12) lives in
their base class, :mod:`recbole_ext.trainer.trainer`.
"""

import contextlib
import functools
import logging
import pickle
import sys
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from recbole_ext.codec import TAG, decode, encode, plain  # layer 0: the weights-only value codec (C14)
from recbole_ext.errors import MissingPackageError  # layer 0
from recbole_ext.parsing import SafeYamlLoader, parse_value  # layer 0

PATCHES = []
_MARK = "_recbole_ext_patched"
_SINE = "recbole.model.sequential_recommender.sine"
# (anomaly detection on, RecBole's SINE module already imported) when recbole_ext was first imported (C20)
_ANOMALY_AT_IMPORT = (torch.is_anomaly_enabled(), _SINE in sys.modules)


def _register(name):
    if name not in PATCHES:
        PATCHES.append(name)


def _is_patched(obj):
    return getattr(obj, _MARK, False)


def _mark(func):
    setattr(func, _MARK, True)
    return func


# ---------------------------------------------------------------------------------------------
# C1 — NumPy >= 2 removed np.float / np.complex / np.unicode (and np.float_, ...).
# recbole.config.configurator.Config.compatibility_settings assigns them from the removed
# underscore names and crashes every Config; recbole.evaluator.metrics (MRR, MAP, NDCG, GAUC) uses
# np.float / np.bool. Install the same alias names from NumPy-2-safe sources, once at import.
# ---------------------------------------------------------------------------------------------
def install_numpy_aliases():
    aliases = {
        "bool": np.bool_,
        "int": np.int_,
        "float": np.float64,
        "complex": np.complex128,
        "object": np.object_,
        "str": np.str_,
        "long": np.int_,
        "unicode": np.str_,
    }
    for name, value in aliases.items():
        if name in ("bool", "long") and name in np.__dict__:
            continue  # NumPy 2 defines these natively
        setattr(np, name, value)


def _patch_numpy_aliases():
    from recbole.config.configurator import Config

    install_numpy_aliases()
    if not _is_patched(Config.compatibility_settings):

        @_mark
        def compatibility_settings(self):
            install_numpy_aliases()

        Config.compatibility_settings = compatibility_settings
    _register("C1 Config.compatibility_settings: NumPy 2 aliases")


# ---------------------------------------------------------------------------------------------
# C4 — recbole.evaluator.collector.Collector.get_data_struct calls .cpu() on every value, but
# data.num_items / num_users are ints and data.count_items / count_users Counters → ItemCoverage,
# GiniIndex, AveragePopularity, TailPercentage crash (upstream #2131, #2191). Move only tensors.
# ---------------------------------------------------------------------------------------------
PER_EVALUATION_KEYS = ("rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label")


def _patch_collector():
    import copy

    import torch
    from recbole.evaluator.collector import Collector

    if _is_patched(Collector.get_data_struct):
        _register("C4 Collector.get_data_struct: non-tensor values")
        return

    @_mark
    def get_data_struct(self):
        data = self.data_struct._data_dict
        for key, value in data.items():
            if isinstance(value, torch.Tensor):
                data[key] = value.cpu()
        returned_struct = copy.deepcopy(self.data_struct)
        for key in PER_EVALUATION_KEYS:
            if key in self.data_struct:
                del self.data_struct[key]
        return returned_struct

    Collector.get_data_struct = get_data_struct
    _register("C4 Collector.get_data_struct: non-tensor values")


# ---------------------------------------------------------------------------------------------
# C5 — SciPy >= 1.13 removed the private dok_matrix._update used by the adjacency construction of
# recbole.model.general_recommender.lightgcn.LightGCN.get_norm_adj_mat (also NGCF, NCL, GCMC,
# SpectralCF, KGIN, MCCLK, KSR; upstream #2034). Give dok_matrix a bulk-update method again.
# ---------------------------------------------------------------------------------------------
def _patch_dok_update():
    if not hasattr(sp.dok_matrix, "_update"):

        def _update(self, mapping):
            store = getattr(self, "_dict", None)
            if store is not None:
                store.update(mapping)
            else:  # very old layouts where dok_matrix is itself a dict
                dict.update(self, mapping)

        sp.dok_matrix._update = _mark(_update)
    _register("C5 scipy dok_matrix._update (LightGCN & co. adjacency)")


# ---------------------------------------------------------------------------------------------
# C6 — pandas 3 (Copy-on-Write): recbole.data.dataset.dataset.Dataset._load_feat fills NaN in
# token_seq / float_seq columns with a chained in-place fillna, a silent no-op → "'float' object
# has no attribute 'split'". The module's `pd` becomes a proxy whose read_csv pre-fills them.
# ---------------------------------------------------------------------------------------------
class _ModuleProxy:
    """Stands in for a module inside one RecBole module: forwards every attribute except what a subclass
    overrides. ``_cache_lookups``: keep each forwarded attribute after its first lookup (hot paths)."""

    _recbole_ext_patched = True
    _cache_lookups = False

    def __init__(self, module):
        object.__setattr__(self, "_module", module)

    def __getattr__(self, name):
        value = getattr(self._module, name)
        if self._cache_lookups:
            object.__setattr__(self, name, value)
        return value


class _PandasProxy(_ModuleProxy):
    """Forwards everything to pandas; read_csv fills NaN in sequence columns with ''."""

    def read_csv(self, *args, **kwargs):
        df = self._module.read_csv(*args, **kwargs)
        for column in df.columns:
            if str(column).endswith(("token_seq", "float_seq")):
                df[column] = df[column].fillna("")
        return df


def _patch_sequence_nan():
    import recbole.data.dataset.dataset as dataset_module

    if not isinstance(dataset_module.pd, _PandasProxy):
        dataset_module.pd = _PandasProxy(pd)
    _register("C6 Dataset._load_feat: NaN in sequence columns (pandas 3)")


# ---------------------------------------------------------------------------------------------
# C7 — pandas 3: recbole.data.dataset.dataset.Dataset._fill_nan uses chained fillna(inplace=True)
# → NaN silently stays in FLOAT features. Same behaviour, assignment form.
# ---------------------------------------------------------------------------------------------
def _patch_fill_nan():
    from recbole.data.dataset.dataset import Dataset
    from recbole.utils import FeatureType, set_color

    if _is_patched(Dataset._fill_nan):
        _register("C7 Dataset._fill_nan: assignment form (pandas 3)")
        return

    @_mark
    def _fill_nan(self):
        self.logger.debug(set_color("Filling nan", "green"))
        for feat_name in self.feat_name_list:
            feat = getattr(self, feat_name)
            for field in feat:
                ftype = self.field2type[field]
                if ftype == FeatureType.TOKEN:
                    feat[field] = feat[field].fillna(value=0)
                elif ftype == FeatureType.FLOAT:
                    feat[field] = feat[field].fillna(value=feat[field].mean())
                else:
                    dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                    feat[field] = feat[field].apply(
                        lambda x, dtype=dtype: np.array([], dtype=dtype) if isinstance(x, float) else x
                    )

    Dataset._fill_nan = _fill_nan
    _register("C7 Dataset._fill_nan: assignment form (pandas 3)")


# ---------------------------------------------------------------------------------------------
# C8 — pandas 3: Series.agg(len) returns the Series length instead of element-wise lengths. Used in
# Dataset._remap, Dataset._normalize, Dataset._discretization, SequentialDataset._benchmark_presets
# and KnowledgeBasedDataset._remap. While those run, Series.agg(len) means Series.map(len).
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _elementwise_len_agg():
    original = pd.Series.agg

    def agg(self, func=None, *args, **kwargs):
        if func is len:
            return self.map(len)
        return original(self, func, *args, **kwargs)

    pd.Series.agg = agg
    try:
        yield
    finally:
        pd.Series.agg = original


def _scoped_len_agg(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _elementwise_len_agg():
            return method(*args, **kwargs)

    return _mark(wrapper)


def _patch_series_agg_len():
    if int(pd.__version__.split(".")[0]) < 3:
        return
    from recbole.data.dataset.dataset import Dataset
    from recbole.data.dataset.kg_dataset import KnowledgeBasedDataset
    from recbole.data.dataset.sequential_dataset import SequentialDataset

    targets = [
        (Dataset, "_remap"),
        (Dataset, "_normalize"),
        (Dataset, "_discretization"),
        (SequentialDataset, "_benchmark_presets"),
        (KnowledgeBasedDataset, "_remap"),
    ]
    for cls, name in targets:
        method = cls.__dict__.get(name)
        if method is not None and not _is_patched(method):
            setattr(cls, name, _scoped_len_agg(method))
    _register("C8 Series.agg(len) element-wise inside Dataset._remap & co. (pandas 3)")


# ---------------------------------------------------------------------------------------------
# C9–C11 — warnings only (pandas 3.1 inplace deprecations, NumPy 2 __array_wrap__, torch
# GradScaler / sparse.FloatTensor): harmless, silenced so that logs and `-W error` runs stay clean.
# ---------------------------------------------------------------------------------------------
def _filter_warnings():
    warnings.filterwarnings("ignore", message=".*__array_wrap__.*", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*torch.cuda.amp.GradScaler.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torch.sparse.SparseTensor.*", category=UserWarning)
    warnings.filterwarnings("ignore", message=".*non-writable.*", category=UserWarning)
    warnings.filterwarnings("ignore", message=".*inplace.*", module="recbole")
    warnings.filterwarnings("ignore", category=FutureWarning, module="recbole")
    # pandas 3: RecBole's chained fillna(inplace=True) warns; C6/C7 already do the filling
    warnings.filterwarnings("ignore", message="A value is being set on a copy", module="recbole")
    _register("C9-C11 known harmless warnings filtered")


# ---------------------------------------------------------------------------------------------
# C17  recbole.config.configurator.Config._build_yaml_loader / _convert_config_dict: RecBole reads
# YAML with yaml.FullLoader (``!!python/name`` imports modules named in a file) and ``eval``s every
# string of config_dict and the command line. A RecBole user's own ``Config`` (recbole.quick_start)
# gets recbole_ext's safe reading: no Python tags, literals only (recbole_ext.parsing, layer 0).
# ---------------------------------------------------------------------------------------------
def _patch_recbole_config_parsing():
    from recbole.config.configurator import Config

    if not _is_patched(Config._build_yaml_loader):
        @_mark
        def _build_yaml_loader(self):
            return SafeYamlLoader

        Config._build_yaml_loader = _build_yaml_loader
    if not _is_patched(Config._convert_config_dict):
        @_mark
        def _convert_config_dict(self, config_dict):
            return {key: parse_value(value) for key, value in config_dict.items()}

        Config._convert_config_dict = _convert_config_dict
    _register("C17 RecBole Config: safe YAML loader and literal-only parsing (nothing from a file or the "
              "command line is executed)")


# ---------------------------------------------------------------------------------------------
# C13 — recbole.utils.utils.ensure_dir is "if not exists: os.makedirs", a race when several
# processes of one multi-process run create log/<model>, saved/, ... at once (FileExistsError in
# init_logger). Same function with exist_ok, in every module that imported it by name.
# ---------------------------------------------------------------------------------------------
def _patch_ensure_dir():
    import importlib
    import os

    @_mark
    def ensure_dir(dir_path):
        os.makedirs(dir_path, exist_ok=True)

    for name in ("recbole.utils.utils", "recbole.utils", "recbole.utils.logger", "recbole.trainer.trainer",
                 "recbole.data.utils", "recbole.data.dataset.dataset"):
        module = importlib.import_module(name)
        if not _is_patched(getattr(module, "ensure_dir", None)):
            module.ensure_dir = ensure_dir
    _register("C13 ensure_dir: exist_ok (processes of one run create the same folders)")


# ---------------------------------------------------------------------------------------------
# C14 — torch >= 2.6: torch.load is weights-only by default, and RecBole 1.2.1 writes checkpoints
# it refuses: recbole.trainer.trainer.Trainer._save_checkpoint (pickle protocol 4 + the whole
# Config object), PretrainTrainer.save_pretrained_model and DecisionTreeTrainer._save_checkpoint
# (the Config object), NeuMF.dump_parameters (the whole pickled model). Every load then fails:
# Trainer.evaluate(load_best_model=True) (the end of every run_recbole), Trainer.resume_checkpoint,
# and the pretrained-weight loads in S3Rec.__init__, NeuMF.load_pretrain, ConvNCF.__init__,
# NAIS._load_pretrain, RaCT.__init__ and KD_DAGFM.__init__. Turning weights_only off would run
# whatever a downloaded .pth holds. Instead, in those modules `torch` becomes a proxy whose
#   save writes what weights-only loading reads: the Config as plain values ("config": its final
#        values, "external_config": what the user gave, from which load_data_and_model rebuilds
#        it), other_parameter's NumPy / SciPy values as tagged tensors, a model as its state_dict
#        (what NeuMF.load_pretrain reads), the default pickle protocol;
#   load is torch.load(weights_only=True) with NO allow-list, decoding other_parameter; a file it
#        refuses (written by RecBole without recbole_ext, or anything else pickled) raises
#        UnsafeCheckpointError saying why and what to do.
# ---------------------------------------------------------------------------------------------
CHECKPOINT_FORMAT = "recbole_ext.recbole_checkpoint"  # marks files written through the proxy
TORCH_LOAD_MODULES = (
    "recbole.trainer.trainer",
    "recbole.model.sequential_recommender.s3rec",
    "recbole.model.general_recommender.neumf",
    "recbole.model.general_recommender.convncf",
    "recbole.model.general_recommender.nais",
    "recbole.model.general_recommender.ract",
    "recbole.model.context_aware_recommender.kd_dagfm",
)


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint that only full unpickling (which can run code from the file) could read."""


def _decode_other_parameter(other):
    """other_parameter for ``model.load_other_parameter``: a sub-module's entry is left out (RecBole's
    load_other_parameter would assign a dict in its place; its weights come with the state_dict)."""
    if not isinstance(other, dict):
        return other
    return {k: decode(v) for k, v in other.items() if not (isinstance(v, dict) and v.get(TAG) == "module_state")}


def weights_only_state(obj):
    """What RecBole saves, in a form ``torch.load(weights_only=True)`` reads without an allow-list
    (see C14). Also converts a checkpoint loaded from a file the caller trusts."""
    import torch
    from recbole.config import Config

    if isinstance(obj, torch.nn.Module):  # NeuMF.dump_parameters: the state_dict load_pretrain reads
        return {k: v.detach().cpu() for k, v in obj.state_dict().items()}
    if not isinstance(obj, dict) or "config" not in obj:
        return obj
    state = dict(obj)
    config = state["config"]
    if isinstance(config, Config):
        state["config"] = plain(config.final_config_dict)
        state["external_config"] = plain(getattr(config, "external_config_dict", {}))
    if "other_parameter" in state:
        state["other_parameter"] = encode(state["other_parameter"], object_arrays=True)
    for key in ("epoch", "cur_step", "best_valid_score"):
        if key in state:
            state[key] = plain(state[key])
    state["format"] = CHECKPOINT_FORMAT
    return state


def safe_load(f, map_location=None, **kwargs):
    """``torch.load(f, weights_only=True)`` (no allow-list; a ``weights_only`` argument is ignored) with
    other_parameter decoded; :class:`UnsafeCheckpointError` for what only full unpickling could read."""
    import torch

    kwargs.pop("weights_only", None)
    try:
        checkpoint = torch.load(f, map_location=map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{f} holds pickled Python objects, which recbole_ext does not load (unpickling can run code "
            "from the file). Stock RecBole saves its whole Config this way: re-train (or re-run the "
            "pretraining) after `import recbole_ext`, whose patched RecBole trainers write weights-only "
            "files; a file you trust can be converted once, see docs/recbole.md"
        ) from err
    if isinstance(checkpoint, dict) and checkpoint.get("format") == CHECKPOINT_FORMAT:
        checkpoint["other_parameter"] = _decode_other_parameter(checkpoint.get("other_parameter"))
    return checkpoint


class _TorchProxy(_ModuleProxy):
    """Forwards everything to torch, except ``load`` (:func:`safe_load`) and ``save`` (:func:`weights_only_state`)."""

    _cache_lookups = True  # torch.* is called in models' forward passes

    @staticmethod
    def load(f, map_location=None, **kwargs):
        return safe_load(f, map_location=map_location, **kwargs)

    def save(self, obj, f, *args, **kwargs):
        kwargs.pop("pickle_protocol", None)  # protocol 4 is what weights-only loading cannot read
        return self._module.save(weights_only_state(obj), f, *args, **kwargs)


def _patch_checkpoint_loads():
    import importlib

    import torch

    for name in TORCH_LOAD_MODULES:
        module = importlib.import_module(name)
        if not isinstance(module.torch, _TorchProxy):
            module.torch = _TorchProxy(torch)
    _register("C14 RecBole checkpoints & pretrained weights: weights-only save and load")


# ---------------------------------------------------------------------------------------------
# C15 — recbole.quick_start imports `ray.tune` at module level (quick_start.py:20), used only by
# objective_function (tune.report): without Ray, `from recbole.quick_start import run_recbole`
# fails. The module is imported here with a lazy `tune` (real Ray Tune on first use; without it an
# ImportError naming the extra), so Ray is neither needed nor imported before a search runs.
# recbole.quick_start.load_data_and_model reads its checkpoint with a bare torch.load (C14):
# replaced by the same steps on safe_load, the Config rebuilt from the checkpoint's plain values.
# ---------------------------------------------------------------------------------------------
RAY_MISSING = (
    "recbole.quick_start's hyper-parameter search (objective_function, run_hyper.py) runs on Ray Tune, "
    "which is not installed: pip install -r requirements-tune.txt   (or: pip install -e .[tune])"
)


class _LazyTune:
    """``ray.tune``, imported on first attribute access."""

    _recbole_ext_patched = True

    def __getattr__(self, name):
        try:
            from ray import tune
        except ImportError as err:
            raise ImportError(RAY_MISSING) from err
        return getattr(tune, name)


@contextlib.contextmanager
def _ray_stand_in():
    """While recbole.quick_start is imported: `ray` / `ray.tune` stand-ins (restored afterwards)."""
    import sys
    import types

    names = ("ray", "ray.tune")
    saved = {name: sys.modules[name] for name in names if name in sys.modules}
    ray = types.ModuleType("ray")
    ray.tune = _LazyTune()
    sys.modules["ray"], sys.modules["ray.tune"] = ray, ray.tune
    try:
        yield
    finally:
        for name in names:
            if name in saved:
                sys.modules[name] = saved[name]
            else:
                sys.modules.pop(name, None)


def _import_quick_start():
    import importlib
    import sys

    name = "recbole.quick_start.quick_start"
    if name in sys.modules or sys.modules.get("ray") is not None:  # Ray already loaded: the real import
        return importlib.import_module(name)
    with _ray_stand_in():
        return importlib.import_module(name)


def rebuild_config(checkpoint, path=""):
    """RecBole's ``Config`` of a C14 checkpoint, rebuilt from what the user gave (``external_config``;
    this command line is ignored). Warns about final values that differ from the saved ones."""
    import sys

    from recbole.config import Config

    saved, external = checkpoint.get("config"), checkpoint.get("external_config")
    if not isinstance(saved, dict) or external is None:
        raise UnsafeCheckpointError(f"{path} records no configuration RecBole's Config can be rebuilt from")
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        config = Config(model=saved["model"], dataset=saved["dataset"], config_dict=dict(external))
    finally:
        sys.argv = argv
    differing = sorted(k for k, v in saved.items() if k != "device" and plain(config[k]) != v)
    if differing:
        message = f"{path}: the rebuilt configuration differs from the saved one in {differing} (other defaults?)"
        logging.getLogger().warning(message)
        warnings.warn(message, stacklevel=2)
    return config


@_mark
def load_data_and_model(model_file):
    """recbole.quick_start.load_data_and_model on :func:`safe_load` and :func:`rebuild_config`."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, init_logger, init_seed

    checkpoint = safe_load(model_file, map_location="cpu")
    config = rebuild_config(checkpoint, model_file)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = logging.getLogger()
    logger.info(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data


def _ray_first(objective_function):
    """objective_function reports to Tune after training: without Ray, say so before training."""

    @functools.wraps(objective_function)
    def wrapper(*args, **kwargs):
        try:
            import ray.tune  # noqa: F401
        except ImportError as err:
            raise ImportError(RAY_MISSING) from err
        return objective_function(*args, **kwargs)

    return _mark(wrapper)


def _patch_quick_start():
    import importlib

    module = _import_quick_start()
    package = importlib.import_module("recbole.quick_start")
    if not _is_patched(module.load_data_and_model):
        module.load_data_and_model = package.load_data_and_model = load_data_and_model
    if not _is_patched(module.objective_function):
        module.objective_function = package.objective_function = _ray_first(module.objective_function)
    _register("C15 recbole.quick_start: importable without Ray; load_data_and_model weights-only")



# ---------------------------------------------------------------------------------------------
# C16 — RecBole caches the filtered dataset and the split dataloaders as plain pickles
# (Dataset.save, recbole.data.utils.save_split_dataloaders; save_dataset / save_dataloaders) and
# unpickles whatever file sits at dataset_save_path / dataloaders_save_path or the default name
# in checkpoint_dir (recbole.data.utils.create_dataset, load_split_dataloaders): code from a file.
# Refused: in recbole.data.utils `pickle.load` raises UnsafeCheckpointError naming the alternative;
# the two savers write nothing (with a warning), so that a later run never meets a file to refuse.
# Both are rebuilt from the atomic files instead: with the same seed, the same data and split.
# ---------------------------------------------------------------------------------------------
PICKLE_REFUSED = (
    "RecBole's saved datasets and dataloaders are pickles, which recbole_ext neither writes nor loads "
    "(unpickling can run code from the file). Delete {path} and set save_dataset / save_dataloaders: False "
    "(dataset_save_path / dataloaders_save_path: ~): they are rebuilt from the atomic files — with the same "
    "seed, the same data and split"
)


class _PickleProxy(_ModuleProxy):
    """Forwards everything to pickle, except ``load`` (refused)."""

    def load(self, file, *args, **kwargs):
        raise UnsafeCheckpointError(PICKLE_REFUSED.format(path=getattr(file, "name", file)))


def _skip_pickle_save(what):
    message = (f"not saved: {what} (save_dataset / save_dataloaders) would be a pickle, which recbole_ext "
               "never loads; it is rebuilt from the atomic files")
    logging.getLogger().warning(message)
    warnings.warn(message, stacklevel=3)


@_mark
def save_split_dataloaders(config, dataloaders):
    _skip_pickle_save(f"the split dataloaders of {config['model']} on {config['dataset']}")


@_mark
def _save_dataset(self):
    _skip_pickle_save(f"the filtered dataset {self.dataset_name}")


# ---------------------------------------------------------------------------------------------
# C18  recbole.model.sequential_recommender.ksr.KSR.__init__: the relation matrix is kept as float64
# (Dataset._preload_weight_matrix fills np.zeros), and memory_read multiplies it with float32 states:
# every KSR run stops ("expected m1 and m2 to have the same dtype"). Keep it in the model's dtype.
# ---------------------------------------------------------------------------------------------
def _patch_ksr_dtype():
    from recbole.model.sequential_recommender.ksr import KSR

    if _is_patched(KSR.__init__):
        return
    original = KSR.__init__

    @_mark
    @functools.wraps(original)
    def __init__(self, config, dataset):
        original(self, config, dataset)
        self.relation_Matrix = self.relation_Matrix.to(self.entity_embedding.weight.dtype)

    KSR.__init__ = __init__
    _register("C18 KSR.__init__: relation matrix in the embeddings' dtype (was float64: every run failed)")


# ---------------------------------------------------------------------------------------------
# C19  recbole.utils.get_model: models whose optional package is missing fail far from the cause
# (the exlib package does not import at all; NCL, KGAT, KGIN, MCCLK only once training starts).
# Name the package and the extra when the model is looked up.
# ---------------------------------------------------------------------------------------------
ZOO_EXTRA = "pip install -r requirements-zoo.txt (or pip install -e .[zoo]); docs/model-zoo.md"
NO_WHEEL = "no wheel for this torch on PyPI (docs/model-zoo.md: build it yourself)"
OPTIONAL_PACKAGES = {  # RecBole model -> (packages it imports, how to get them)
    "NCL": (("faiss",), ZOO_EXTRA),
    "LightGBM": (("lightgbm", "xgboost"), ZOO_EXTRA),  # RecBole's exlib package imports both
    "XGBoost": (("lightgbm", "xgboost"), ZOO_EXTRA),
    "KGAT": (("dgl",), NO_WHEEL),
    "KGIN": (("torch_scatter",), NO_WHEEL),
    "MCCLK": (("torch_scatter",), NO_WHEEL),
}


def require_optional_packages(model_name):
    """:class:`MissingPackageError` (an ``ImportError``) naming the missing package(s) and how to install
    them, if ``model_name`` is one of RecBole's models with an optional dependency that is not installed."""
    import importlib.util

    packages, how = OPTIONAL_PACKAGES.get(model_name, ((), ""))
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise MissingPackageError(f"RecBole's {model_name} needs the optional package(s) {', '.join(missing)}, "
                          f"not installed: {how}")


def _patch_get_model():
    import importlib

    import recbole.utils.utils as utils_module

    if _is_patched(utils_module.get_model):
        return
    original = utils_module.get_model

    @_mark
    @functools.wraps(original)
    def get_model(model_name):
        require_optional_packages(model_name)
        return original(model_name)

    for name in ("recbole.utils.utils", "recbole.utils", "recbole.quick_start.quick_start",
                 "recbole.config.configurator"):
        module = importlib.import_module(name)
        if getattr(module, "get_model", None) is original:
            module.get_model = get_model
    _register("C19 get_model: a model's missing optional package named, with the extra to install")


def _patch_pickled_data():
    import recbole.data as data_package
    import recbole.data.utils as data_utils
    from recbole.data.dataset.dataset import Dataset

    if not isinstance(data_utils.pickle, _PickleProxy):
        data_utils.pickle = _PickleProxy(pickle)
    data_utils.save_split_dataloaders = data_package.save_split_dataloaders = save_split_dataloaders
    if not _is_patched(Dataset.save):
        Dataset.save = _save_dataset
    _register("C16 RecBole's pickled dataset / dataloader files: not written, refused on loading")

# ---------------------------------------------------------------------------------------------
# C20  recbole/model/sequential_recommender/sine.py calls torch.autograd.set_detect_anomaly(True) when it is
# imported — and importing any RecBole sequential model imports it. Every later backward pass then runs with
# anomaly detection (no value changes; a SASRec training epoch measured 1.7x slower, side by side).
# Switch it back off, unless the user had switched it on before importing recbole_ext.
# ---------------------------------------------------------------------------------------------
def _patch_sine_anomaly_detection():
    import importlib

    importlib.import_module(_SINE)  # runs SINE's module-level call now, once, so that it is undone below
    enabled_by_user = _ANOMALY_AT_IMPORT[0] and not _ANOMALY_AT_IMPORT[1]
    if torch.is_anomaly_enabled() and not enabled_by_user:
        torch.autograd.set_detect_anomaly(False)
    _register("C20 sine.py's set_detect_anomaly(True) at import: switched back off (every backward ran slower: 1.7x on a SASRec epoch)")


def apply():
    """Apply every patch (idempotent). Called by ``import recbole_ext``."""
    _patch_numpy_aliases()
    _patch_collector()
    _patch_dok_update()
    _patch_sequence_nan()
    _patch_fill_nan()
    _patch_series_agg_len()
    _patch_ensure_dir()
    _patch_checkpoint_loads()
    _patch_quick_start()
    _patch_pickled_data()
    _patch_recbole_config_parsing()
    _patch_ksr_dtype()
    _patch_get_model()
    _patch_sine_anomaly_detection()
    _filter_warnings()
    logging.getLogger(__name__).debug("recbole_ext compat patches: %s", PATCHES)
    return list(PATCHES)
