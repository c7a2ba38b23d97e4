r"""GF-CF: graph-filter collaborative filtering, training-free (closed form).

Reference:
    Shen, Wu, Zhang, Li, Zhao, Yang, Wang, Letaief, Lee. "How Powerful is Graph Convolution for
    Recommendation?" CIKM 2021 (code: yshenaw/GF_CF, ``Table3&4/model.py``, class ``GF_CF``); and the
    PoliMi course framework's ``GraphFilterCFRecommender`` (M. Ferrari Dacrema).

Score(u) = r_u · R̃ᵀR̃  +  α · r_u · D_I^{-1/2} V Vᵀ D_I^{+1/2}

with R̃ = D_U^{-1/2} R D_I^{-1/2} the degree-normalised train matrix and V its top-k right singular
vectors. ``gfcf_variant`` selects the original paper's choices or the course framework's; every
choice is also its own config key (a key left ``~`` takes the variant's value):

=================  ===================  =========================
key                original             course
=================  ===================  =========================
gfcf_k             256                  50
gfcf_alpha         0.3                  1.0
gfcf_svd           exact (ARPACK)       randomized (sklearn)
                   (``propack``: scipy PROPACK, same exact subspace, faster for k=256)
gfcf_degree        zero (1/0 → 0)       epsilon (G2 epsilons)
gfcf_binarize      true                 false (RATING_FIELD values)
gfcf_topk          ~ (no pruning)       ~ (``_W_`` variant: 100)
=================  ===================  =========================

Scoring never builds the dense item × item matrix unless it fits ``gfcf_dense_max_mb``: otherwise the
linear term is two sparse × dense products ((R̃ (r_u)ᵀ)ᵀ R̃) and the ideal term goes through the k-dim
factors, batched over the users of each evaluation batch.
"""

import math

import numpy as np
import scipy.sparse as sp
import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType, ModelType

from recbole_ext.errors import ConfigError

VARIANTS = {
    "original": {
        "gfcf_k": 256,
        "gfcf_alpha": 0.3,
        "gfcf_svd": "exact",
        "gfcf_degree": "zero",
        "gfcf_binarize": True,
        "gfcf_topk": None,
    },
    "course": {
        "gfcf_k": 50,
        "gfcf_alpha": 1.0,
        "gfcf_svd": "randomized",
        "gfcf_degree": "epsilon",
        "gfcf_binarize": False,
        "gfcf_topk": None,
    },
}
DENSE_SVD_MAX_ENTRIES = 8_000_000  # exact SVD: below this many matrix entries use dense LAPACK, above ARPACK
CHOICES = {"gfcf_svd": ("exact", "randomized", "propack"), "gfcf_degree": ("zero", "epsilon"), "gfcf_scoring": ("auto", "dense", "factored")}


def resolve_options(config):
    """The effective GF-CF options of ``config``: the ``gfcf_variant`` preset, then every preset key set (not ~)."""
    variant = str(config["gfcf_variant"])
    if variant not in VARIANTS:
        raise ConfigError(
            f"gfcf_variant '{variant}' is unknown: use one of {', '.join(VARIANTS)} "
            "(set it in the config file or with --gfcf_variant=...)"
        )
    opts = dict(VARIANTS[variant], gfcf_variant=variant)
    for key in VARIANTS[variant]:
        if config[key] is not None:
            opts[key] = config[key]
    opts["gfcf_scoring"] = str(config["gfcf_scoring"])
    opts["gfcf_dense_max_mb"] = float(config["gfcf_dense_max_mb"])
    opts["gfcf_eps"] = float(config["gfcf_eps"])
    opts["gfcf_zero_degree_quirk"] = bool(config["gfcf_zero_degree_quirk"])
    svd_seed = config["gfcf_svd_seed"]
    opts["gfcf_svd_seed"] = config["seed"] if svd_seed is None else svd_seed  # ~ = the run's seed
    for key, allowed in CHOICES.items():
        if str(opts[key]) not in allowed:
            raise ConfigError(f"{key} '{opts[key]}' is invalid: use one of {', '.join(allowed)}")
    try:
        opts["gfcf_alpha"] = float(opts["gfcf_alpha"])
        opts["gfcf_k"] = int(opts["gfcf_k"])
    except (TypeError, ValueError) as err:
        raise ConfigError(f"gfcf_alpha must be a number and gfcf_k an integer: {err}") from None
    if not math.isfinite(opts["gfcf_alpha"]) or opts["gfcf_alpha"] < 0:
        raise ConfigError(f"gfcf_alpha = {opts['gfcf_alpha']} is invalid: the ideal-filter weight must be >= 0")
    if opts["gfcf_k"] < 1 and opts["gfcf_alpha"] > 0:
        raise ConfigError(f"gfcf_k = {opts['gfcf_k']} is invalid: the SVD rank must be >= 1 (or set gfcf_alpha: 0)")
    if opts["gfcf_topk"] is not None:
        opts["gfcf_topk"] = int(opts["gfcf_topk"])
        if opts["gfcf_topk"] < 1:
            raise ConfigError(f"gfcf_topk = {opts['gfcf_topk']} is invalid: use a positive integer or ~ (no pruning)")
    if opts["gfcf_eps"] < 0:
        raise ConfigError(f"gfcf_eps = {opts['gfcf_eps']} is invalid: it must be >= 0")
    return opts


def normalise(X, degree="zero", eps=1e-6, zero_degree_quirk=False):
    """Return (R̃, d_I^{-1/2}, d_I^{+1/2}) for the user × item matrix ``X`` (float64 CSR).

    ``zero``: D^{-1/2} with 1/0 set to 0 (original); the right factor d_I^{+1/2} is √d (0 for
    zero-degree items) unless ``zero_degree_quirk`` (G1: the original's 1/d_inv, i.e. inf).
    ``epsilon``: course framework (G2): items 1/(√d + ε), users 1/√d + ε.
    """
    d_u = np.asarray(X.sum(axis=1)).ravel()
    d_i = np.asarray(X.sum(axis=0)).ravel()
    with np.errstate(divide="ignore"):
        if degree == "zero":
            du_inv = np.power(d_u, -0.5)
            du_inv[np.isinf(du_inv)] = 0.0
            di_inv = np.power(d_i, -0.5)
            di_inv[np.isinf(di_inv)] = 0.0
            di_right = 1.0 / di_inv if zero_degree_quirk else np.sqrt(d_i)
        else:
            du_inv = 1.0 / np.sqrt(d_u) + eps  # inf for empty rows: harmless, the row has no entries
            di_inv = 1.0 / (np.sqrt(d_i) + eps)
            di_right = np.sqrt(d_i)
    X = sp.csr_matrix(X)
    row_scale = np.repeat(du_inv, np.diff(X.indptr))
    data = X.data * row_scale * di_inv[X.indices]
    norm = sp.csr_matrix((data, X.indices.copy(), X.indptr.copy()), shape=X.shape)
    return norm, di_inv, di_right


def truncated_svd(norm, k, method="exact", seed=None):
    """Top-``k`` right singular vectors of ``norm`` as an (n_items × k) array (descending order)."""
    n_users_real = int((np.diff(norm.tocsr().indptr) > 0).sum())
    n_items_real = int((np.diff(norm.tocsc().indptr) > 0).sum())
    limit = min(n_users_real, n_items_real) - (1 if method in ("exact", "propack") else 0)
    if k > limit:
        raise ConfigError(
            f"gfcf_k = {k} is too large: the train matrix has {n_users_real} users and {n_items_real} items with "
            f"interactions, so the {method} SVD allows at most k = {limit}. Lower gfcf_k"
        )
    if method in ("exact", "propack") and norm.shape[0] * norm.shape[1] <= DENSE_SVD_MAX_ENTRIES:
        # small matrix: LAPACK on the dense matrix (same exact subspace, much faster than ARPACK for large k)
        import scipy.linalg

        _, _, vt = scipy.linalg.svd(norm.toarray(), full_matrices=False)
        return np.ascontiguousarray(vt[:k].T)
    if method == "propack":
        # PROPACK Lanczos bidiagonalisation (scipy svds solver="propack"): converged to the same
        # tolerance as ARPACK, i.e. the same exact subspace, in about 60 % of ARPACK's time for large k
        from scipy.sparse.linalg import svds

        _, s, vt = svds(norm, k=k, solver="propack", random_state=seed)
        order = np.argsort(-s)
        return np.ascontiguousarray(vt[order].T)
    if method == "exact":
        from scipy.sparse.linalg import svds

        rng = np.random.default_rng(seed)
        v0 = rng.uniform(-1, 1, size=min(norm.shape))
        _, s, vt = svds(norm, k=k, v0=v0)
        order = np.argsort(-s)
        return np.ascontiguousarray(vt[order].T)
    from sklearn.utils.extmath import randomized_svd

    _, _, vt = randomized_svd(norm, n_components=k, random_state=seed)
    return np.ascontiguousarray(vt.T)


def _topk_columns(block, topk):
    """Keep the ``topk`` largest entries of each column of a dense block (values), as CSC."""
    n_rows, n_cols = block.shape
    keep = min(topk, n_rows)
    idx = np.argpartition(-block, keep - 1, axis=0)[:keep]
    vals = np.take_along_axis(block, idx, axis=0)
    cols = np.broadcast_to(np.arange(n_cols), idx.shape)
    return sp.csc_matrix((vals.ravel(), (idx.ravel(), cols.ravel())), shape=block.shape)


class GFCF(GeneralRecommender):
    r"""GF-CF (Shen et al., "How Powerful is Graph Convolution for Recommendation?", CIKM 2021).

    Linear filter R̃ᵀR̃ plus α × ideal low-pass filter D_I^{-1/2} V Vᵀ D_I^{1/2}; closed form, one
    "epoch" of RecBole's traditional trainer. See the module docstring for the config keys.
    """

    input_type = InputType.POINTWISE
    type = ModelType.TRADITIONAL

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.dummy_param = torch.nn.Parameter(torch.zeros(1))
        opts = resolve_options(config)
        self.options = opts
        value_field = None
        if not opts["gfcf_binarize"]:
            rating = config["RATING_FIELD"]
            if rating and rating in dataset.field2type:
                value_field = rating
        X = dataset.inter_matrix(form="csr", value_field=value_field).astype(np.float64)
        X.sum_duplicates()
        if opts["gfcf_binarize"]:
            X.data[:] = 1.0
        X.eliminate_zeros()
        norm, di_inv, di_right = normalise(X, opts["gfcf_degree"], opts["gfcf_eps"], opts["gfcf_zero_degree_quirk"])
        alpha, k = opts["gfcf_alpha"], opts["gfcf_k"]
        if alpha > 0:
            seed = opts["gfcf_svd_seed"]
            seed = None if str(seed).lower() == "none" else int(seed)
            V = truncated_svd(norm, k, opts["gfcf_svd"], seed)
        else:
            V = np.zeros((X.shape[1], 0))
        self.user_matrix = X.astype(np.float32)
        self.norm_matrix = norm.astype(np.float32)
        self.left_factors = (di_inv[:, None] * V).astype(np.float32)  # D_I^{-1/2} V
        with np.errstate(invalid="ignore"):  # inf * 0 only with gfcf_zero_degree_quirk (G1)
            self.right_factors = (V * di_right[:, None]).T.astype(np.float32)  # Vᵀ D_I^{+1/2}  (k × n_items)
        self.alpha = np.float64(alpha)
        n_items = X.shape[1]
        dense_mb = n_items * n_items * 4 / 2**20
        mode = opts["gfcf_scoring"]
        if mode == "auto":
            mode = "dense" if dense_mb <= opts["gfcf_dense_max_mb"] else "factored"
        if opts["gfcf_topk"] is not None:
            mode = "pruned"
        self.scoring = mode
        self.item_filter = self._build_item_filter() if mode in ("dense", "pruned") else np.zeros((0, 0), np.float32)
        self.other_parameter_name = [
            "user_matrix",
            "norm_matrix",
            "left_factors",
            "right_factors",
            "alpha",
            "scoring",
            "item_filter",
        ]
        self._cache = None

    # ------------------------------------------------------------------ item-item filter
    def _build_item_filter(self, block=1024):
        """W = R̃ᵀR̃ + α D_I^{-1/2} V Vᵀ D_I^{1/2}: dense, or top-K per column (course ``_W_`` variant)."""
        norm = sp.csc_matrix(self.norm_matrix)
        norm_t = sp.csr_matrix(self.norm_matrix.T)
        n_items = norm.shape[1]
        topk = self.options["gfcf_topk"]
        blocks = []
        for start in range(0, n_items, block):
            stop = min(start + block, n_items)
            w = np.asarray((norm_t @ norm[:, start:stop]).todense(), dtype=np.float32)
            w += float(self.alpha) * (self.left_factors @ self.right_factors[:, start:stop])
            blocks.append(_topk_columns(w, topk) if topk is not None else w)
        if topk is not None:
            return sp.hstack(blocks).tocsr().astype(np.float32)
        return np.ascontiguousarray(np.hstack(blocks))

    # ------------------------------------------------------------------ scoring
    def load_other_parameter(self, para):
        super().load_other_parameter(para)
        self._cache = None

    def _tensors(self):
        if self._cache is None:
            norm = sp.csr_matrix(self.norm_matrix, dtype=np.float32)
            norm_t = sp.csr_matrix(norm.T)

            self._cache = {
                "X": sp.csr_matrix(self.user_matrix, dtype=np.float32),
                "norm_sp": norm,
                "norm_t_sp": norm_t,
                "left": np.asarray(self.left_factors, dtype=np.float32),
                "right": torch.from_numpy(np.asarray(self.right_factors, dtype=np.float32)),
            }
        return self._cache

    def score_users(self, users):
        """Scores (len(users) × n_items, float32 tensor on CPU) for internal user ids ``users``."""
        c = self._tensors()
        users = np.asarray(users, dtype=np.int64)
        rows = c["X"][users]
        if self.scoring == "dense":
            return torch.from_numpy(np.asarray(rows @ self.item_filter, dtype=np.float32))
        if self.scoring == "pruned":
            return torch.from_numpy(np.asarray((rows @ self.item_filter).todense(), dtype=np.float32))
        # linear term r_u R̃ᵀ R̃ as two sparse × sparse products (each user reaches few co-users), then
        # the low-rank term added in place: scores = lin + α (r_u D_I^{-1/2} V)(Vᵀ D_I^{1/2})
        lin = torch.from_numpy(np.asarray(((rows @ c["norm_t_sp"]) @ c["norm_sp"]).toarray(), dtype=np.float32))
        if float(self.alpha) != 0.0 and c["left"].shape[1] > 0:
            low = torch.from_numpy(np.asarray(rows @ c["left"], dtype=np.float32))  # B × k
            lin = torch.addmm(lin, low, c["right"], alpha=float(self.alpha))
        return lin

    def forward(self):
        pass

    def calculate_loss(self, interaction):
        return torch.nn.Parameter(torch.zeros(1))

    def predict(self, interaction):
        users = interaction[self.USER_ID].cpu().numpy()
        items = interaction[self.ITEM_ID].cpu()
        unique, inverse = np.unique(users, return_inverse=True)
        scores = self.score_users(unique)
        return scores[torch.from_numpy(inverse), items].to(self.device)

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID].cpu().numpy()
        return self.score_users(users).reshape(-1).to(self.device)
