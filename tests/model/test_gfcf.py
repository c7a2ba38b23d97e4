"""GF-CF: closed form vs the dense formula, bad input, end-to-end ml-100k runs."""

import os

import numpy as np
import pytest
import torch

from recbole_ext.config import Config
from recbole_ext.errors import ConfigError
from recbole_ext.model.general_recommender.gfcf import GFCF, resolve_options
from recbole_ext.quick_start import load_data_and_model, run_recbole
from recbole_ext.utils import create_dataset
from tests.helpers import REPO as ROOT



def write_tiny(folder, seed=0, n_users=9, n_items=12):
    """A random tiny explicit dataset (ratings 1..5); every user and item has >= 1 interaction."""
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.35
    dense[np.arange(n_users), np.arange(n_users) % n_items] = True
    dense[np.arange(n_items) % n_users, np.arange(n_items)] = True
    path = os.path.join(folder, "tiny")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "tiny.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        t = 0
        for u, i in zip(*np.nonzero(dense)):
            t += 1
            f.write(f"u{u}\ti{i}\t{rng.integers(1, 6)}\t{t}\n")


def options_of(**keys):
    """GF-CF's effective options for ``keys`` on top of the package defaults."""
    return resolve_options(Config("GFCF", "ml-100k", config_dict=keys))


def tiny_model(run_dir, quiet_config, **keys):
    write_tiny(str(run_dir))
    cfg = dict(quiet_config, data_path=str(run_dir), metrics=["Recall"], valid_metric="Recall@10", **keys)
    config = Config(model="GFCF", dataset="tiny", config_dict=cfg)
    dataset = create_dataset(config)
    return GFCF(config, dataset), dataset, config


def dense_formula(X, k, alpha, degree, eps=1e-6):
    """The GF-CF score matrix from its definition, dense numpy, full SVD."""
    X = np.asarray(X, dtype=np.float64)
    d_u, d_i = X.sum(1), X.sum(0)
    with np.errstate(divide="ignore"):
        if degree == "zero":
            du = np.where(d_u > 0, d_u ** -0.5, 0.0)
            di = np.where(d_i > 0, d_i ** -0.5, 0.0)
        else:
            du = 1.0 / np.sqrt(d_u) + eps
            du[~np.isfinite(du)] = 0.0  # empty rows: no entries to scale
            di = 1.0 / (np.sqrt(d_i) + eps)
    R = du[:, None] * X * di[None, :]
    _, _, vt = np.linalg.svd(R)
    V = vt[:k].T
    W = R.T @ R + alpha * (di[:, None] * V) @ (V.T * np.sqrt(d_i)[None, :])
    return X @ W


@pytest.mark.parametrize("scoring", ["dense", "factored"])
def test_original_equals_dense_formula(run_dir, quiet_config, scoring):
    model, dataset, _ = tiny_model(run_dir, quiet_config, gfcf_k=4, gfcf_scoring=scoring)
    assert model.scoring == scoring
    X = dataset.inter_matrix(form="csr").toarray()
    X = (X > 0).astype(float)
    expected = dense_formula(X, k=4, alpha=0.3, degree="zero")
    got = model.score_users(np.arange(X.shape[0])).numpy()
    assert np.all(np.isfinite(got))  # PAD item has zero degree: guarded (G1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # point-wise predict (sampled evaluation) reads the same scores
    from recbole.data.interaction import Interaction

    users, items = np.array([1, 3, 3, 5]), np.array([2, 0, 7, 11])
    pairs = Interaction({"user_id": torch.from_numpy(users), "item_id": torch.from_numpy(items)})
    np.testing.assert_allclose(model.predict(pairs).numpy(), expected[users, items], rtol=1e-4, atol=1e-5)


def test_course_equals_dense_formula(run_dir, quiet_config):
    """Course: rating values, epsilon degrees, alpha 1; randomized SVD with full rank is exact."""
    model, dataset, _ = tiny_model(
        run_dir,
        quiet_config,
        gfcf_variant="course",
        gfcf_k=8,
        gfcf_scoring="factored",
        load_col={"inter": ["user_id", "item_id", "rating"]},
    )
    X = dataset.inter_matrix(form="csr", value_field="rating").toarray()
    assert X.max() > 1  # really value-weighted
    expected = dense_formula(X, k=8, alpha=1.0, degree="epsilon")
    got = model.score_users(np.arange(X.shape[0])).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_pruned_filter_keeps_topk_per_column(run_dir, quiet_config):
    full, _, _ = tiny_model(run_dir, quiet_config, gfcf_k=4, gfcf_scoring="dense")
    pruned, _, _ = tiny_model(run_dir, quiet_config, gfcf_k=4, gfcf_topk=3)
    W, P = full.item_filter, pruned.item_filter.toarray()
    assert np.all((P != 0).sum(axis=0) <= 3)
    for j in range(W.shape[1]):
        kept = np.sort(P[:, j][P[:, j] != 0])
        if kept.size:
            np.testing.assert_allclose(kept, np.sort(W[:, j])[-kept.size :], rtol=1e-5)
    # with K = n_items nothing is pruned: scores equal the dense W
    unpruned, _, _ = tiny_model(run_dir, quiet_config, gfcf_k=4, gfcf_topk=10_000)
    users = np.arange(1, 6)
    np.testing.assert_allclose(unpruned.score_users(users), full.score_users(users), rtol=1e-5, atol=1e-6)


def test_zero_degree_quirk_option(run_dir, quiet_config):
    model, _, _ = tiny_model(run_dir, quiet_config, gfcf_k=4, gfcf_zero_degree_quirk=True, gfcf_scoring="factored")
    scores = model.score_users(np.arange(1, 4)).numpy()
    assert np.isnan(scores[:, 0]).all()  # PAD item: 0 * inf, as in the original code (G1)
    assert np.isfinite(scores[:, 1:]).all()


def test_variant_presets_and_overrides():
    opts = options_of(gfcf_variant="course", gfcf_k=7)
    assert (opts["gfcf_k"], opts["gfcf_alpha"], opts["gfcf_svd"], opts["gfcf_degree"]) == (7, 1.0, "randomized", "epsilon")
    assert options_of()["gfcf_k"] == 256 and options_of()["gfcf_alpha"] == 0.3


def test_propack_svd_matches_exact_filter(monkeypatch):
    """gfcf_svd: propack (the fast path) gives the exact (ARPACK) path's ideal filter on a sparse matrix."""
    import scipy.sparse as sp

    from recbole_ext.model.general_recommender import gfcf

    monkeypatch.setattr(gfcf, "DENSE_SVD_MAX_ENTRIES", 0)  # force the sparse solvers on a small matrix
    rng = np.random.default_rng(3)
    X = sp.random(300, 400, density=0.03, random_state=rng, format="csr")
    X.data[:] = 1.0
    norm, di_inv, di_right = gfcf.normalise(X)
    filters = {}
    for method in ("exact", "propack"):
        V = gfcf.truncated_svd(norm, 30, method, seed=2020)
        filters[method] = (di_inv[:, None] * V) @ (V.T * di_right[None, :])
    dense_v = np.linalg.svd(norm.toarray())[2][:30].T
    reference = (di_inv[:, None] * dense_v) @ (dense_v.T * di_right[None, :])
    np.testing.assert_allclose(filters["propack"], filters["exact"], atol=1e-8)
    np.testing.assert_allclose(filters["propack"], reference, atol=1e-8)
    assert options_of(gfcf_svd="propack")["gfcf_svd"] == "propack"


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"gfcf_k": 50}, "gfcf_k = 50 is too large"),
        ({"gfcf_alpha": -0.1}, "gfcf_alpha = -0.1 is invalid"),
        ({"gfcf_variant": "paper"}, "gfcf_variant 'paper' is unknown"),
        ({"gfcf_svd": "lanczos"}, "gfcf_svd 'lanczos' is invalid"),
    ],
)
def test_bad_input(run_dir, quiet_config, keys, message):
    with pytest.raises(ConfigError, match=message):
        tiny_model(run_dir, quiet_config, **keys)


def _run(model, run_dir, quiet_config, saved=True, **keys):
    cfg = dict(quiet_config, metrics=["Recall", "NDCG"], topk=[10], valid_metric="NDCG@10", **keys)
    return run_recbole(model, "ml-100k", config_dict=cfg, saved=saved)


@pytest.fixture(scope="module")
def pop_result(tmp_path_factory):
    """RecBole's Pop on ml-100k (the baseline every end-to-end run must beat), computed once."""
    folder = tmp_path_factory.mktemp("pop")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        quiet = {"show_progress": False, "state": "WARNING", "checkpoint_dir": "saved", "log_wandb": False}
        return _run("Pop", folder, quiet, results_dir=os.path.join("saved", "results"))["test_result"]
    finally:
        os.chdir(cwd)


def test_ml100k_beats_pop(run_dir, quiet_config, pop_result):
    pop = pop_result
    original = _run("GFCF", run_dir, quiet_config, saved=False)["test_result"]
    course = _run(
        "GFCF", run_dir, quiet_config, gfcf_variant="course", load_col={"inter": ["user_id", "item_id", "rating"]}
    )["test_result"]
    for result in (original, course):
        assert result["recall@10"] > pop["recall@10"] * 1.5
        assert result["ndcg@10"] > pop["ndcg@10"] * 1.5


def test_checkpoint_roundtrip(run_dir, quiet_config):
    """The weights-only checkpoint restores the closed-form state (factored scoring) exactly."""
    write_tiny(str(run_dir))
    cfg = dict(quiet_config, data_path=str(run_dir), gfcf_k=3, gfcf_scoring="factored", metrics=["Recall"],
               topk=[2], valid_metric="Recall@2")
    result = run_recbole("GFCF", "tiny", config_dict=cfg)
    config, model, _, train_data, _, test_data = load_data_and_model(result["checkpoint"])
    batch = next(iter(test_data))[0]
    fresh = GFCF(config, train_data._dataset)
    assert model.scoring == "factored"
    np.testing.assert_allclose(model.full_sort_predict(batch).numpy(), fresh.full_sort_predict(batch).numpy(), rtol=1e-5)


@pytest.mark.slow
def test_gowalla_reproduces_published(run_dir, quiet_config):
    """GF-CF original on the LightGCN Gowalla split: recall@20 0.1849, ndcg@20 0.1518 (Shen et al. 2021, Table 3).
    Several minutes on 2 CPU cores; run with ``pytest -m slow tests/model/test_gfcf.py``."""
    from recbole_ext.data.lightgcn_converter import convert

    src = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "gowalla")
    if not os.path.exists(os.path.join(src, "train.txt")):
        pytest.skip("Gowalla split not available")
    info = convert(os.path.join(src, "train.txt"), os.path.join(src, "test.txt"), str(run_dir / "data"), "gowalla")
    cfg = dict(quiet_config, data_path=info["data_path"], benchmark_filename=info["benchmark_filename"],
               metrics=["Recall", "NDCG"], topk=[20], valid_metric="NDCG@20", eval_batch_size=40982 * 256)
    result = run_recbole("GFCF", "gowalla", config_dict=cfg, saved=False)["test_result"]
    assert round(result["recall@20"], 4) == 0.1849
    assert round(result["ndcg@20"], 4) == 0.1518
