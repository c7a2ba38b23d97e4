"""The one place where recbole_ext patches RecBole 1.2.1 for today's stack (NumPy 2, pandas 3,
SciPy >= 1.13, torch >= 2.6) — stack fixes only: it imports nothing of recbole_ext (layer 1).

Every patch names the RecBole function it fixes and why, is idempotent (applying twice changes
nothing) and is applied once by :func:`apply` when ``recbole_ext`` is imported — before any
``Config`` is built. See ``shared/specs/recbole-plugin-and-compat.md`` §4 for the analysis; the ids
C1 ... C13 below refer to it. ``PATCHES`` lists what was applied. What recbole_ext's own trainers do
differently from RecBole's (weights-only checkpoints, formerly C3; DDP on CPU, formerly C12) lives in
their base class, :mod:`recbole_ext.trainer.trainer`.
"""

import contextlib
import functools
import logging
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

PATCHES = []
_MARK = "_recbole_ext_patched"


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
class _PandasProxy:
    """Forwards everything to pandas; read_csv fills NaN in sequence columns with ''."""

    _recbole_ext_patched = True

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

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


def apply():
    """Apply every patch (idempotent). Called by ``import recbole_ext``."""
    _patch_numpy_aliases()
    _patch_collector()
    _patch_dok_update()
    _patch_sequence_nan()
    _patch_fill_nan()
    _patch_series_agg_len()
    _patch_ensure_dir()
    _filter_warnings()
    logging.getLogger(__name__).debug("recbole_ext compat patches: %s", PATCHES)
    return list(PATCHES)
