"""Regression tests for each compatibility patch in recbole_ext.compat (C1-C16)."""

import collections
import os

import numpy as np
import pandas as pd
import scipy.sparse as sp
import pytest
import torch
import yaml

from recbole_ext import compat
from recbole_ext.config import Config
from recbole_ext.quick_start import run_recbole
from recbole_ext.utils import create_dataset, data_preparation, get_model


def test_all_patches_applied_and_idempotent():
    before = list(compat.PATCHES)
    assert compat.apply() == before  # applying again adds and changes nothing
    assert any(p.startswith("C1") for p in before)
    # C3 (weights-only checkpoints) moved to the trainer base: it is recbole_ext behaviour, not a stack fix
    assert not any(p.startswith("C3") for p in before)
    assert any(p.startswith("C4") for p in before)
    assert any(p.startswith("C5") for p in before)


def test_c1_numpy_aliases_and_recbole_metric_without_config():
    # RecBole's NDCG uses np.float; it must work even before any Config was built.
    assert np.float is np.float64 and np.unicode is np.str_
    from recbole.evaluator.metrics import NDCG

    metric = NDCG({"topk": [2], "metric_decimal_place": 4})
    pos_index = np.array([[True, False], [False, True]])
    pos_len = np.array([1, 1])
    result = metric.metric_info(pos_index, pos_len)
    assert np.allclose(result[:, 0], [1.0, 0.0])
    assert np.allclose(result[:, 1], [1.0, 1.0 / np.log2(3)])


def test_c1_config_builds_on_numpy2(run_dir, quiet_config):
    config = Config(model="BPR", dataset="ml-100k", config_dict=quiet_config)
    assert config["model"] == "BPR"
    assert int(np.__version__.split(".")[0]) >= 2


def test_c4_collector_handles_non_tensor_values(quiet_config):
    from recbole.evaluator.collector import Collector

    config = Config(
        model="BPR",
        dataset="ml-100k",
        config_dict=dict(quiet_config, metrics=["ItemCoverage", "AveragePopularity"], valid_metric="ItemCoverage@10"),
    )
    collector = Collector(config)
    collector.data_struct.set("data.num_items", 5)
    collector.data_struct.set("data.count_items", collections.Counter({1: 3, 2: 1}))
    collector.data_struct.update_tensor("rec.items", torch.tensor([[1, 2]]))
    struct = collector.get_data_struct()
    assert struct.get("data.num_items") == 5
    assert struct.get("data.count_items")[1] == 3
    assert "rec.items" not in collector.data_struct  # per-evaluation key reset


def test_c4_beyond_accuracy_metrics_in_a_run(run_dir, quiet_config):
    metrics = ["Recall", "NDCG", "ItemCoverage", "GiniIndex", "AveragePopularity", "TailPercentage"]
    result = run_recbole(
        "EASE", "ml-100k", config_dict=dict(quiet_config, metrics=metrics, valid_metric="NDCG@10"), cmd_args=[]
    )
    test = result["test_result"]
    assert 0 < test["itemcoverage@10"] <= 1
    assert 0 < test["giniindex@10"] < 1
    assert test["averagepopularity@10"] > 1
    assert 0 <= test["tailpercentage@10"] <= 1


def test_c5_dok_update_and_lightgcn_adjacency(run_dir, quiet_config):
    matrix = sp.dok_matrix((3, 3), dtype=np.float32)
    matrix._update({(0, 1): 1.0, (2, 2): 3.0})
    assert matrix[0, 1] == 1.0 and matrix[2, 2] == 3.0 and matrix.nnz == 2
    config = Config(model="LightGCN", dataset="ml-100k", config_dict=dict(quiet_config, n_layers=1))
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    model = get_model("LightGCN")(config, train_data._dataset)
    n = dataset.user_num + dataset.item_num
    assert tuple(model.norm_adj_matrix.shape) == (n, n)


def _write_regression_dataset(root):
    folder = os.path.join(root, "nanset")
    os.makedirs(folder)
    with open(os.path.join(folder, "nanset.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\n")
        for u in range(1, 7):
            for i in range(1, 5):
                f.write(f"{u}\t{i}\t{(u + i) % 5 + 1}\n")
    with open(os.path.join(folder, "nanset.item"), "w") as f:
        f.write("item_id:token\tprice:float\tbrand:token\ttags:token_seq\n")
        f.write("1\t10.0\tacme\ta b\n")
        f.write("2\t\tacme\t\n")  # missing price and tags
        f.write("3\t30.0\t\tc\n")  # missing brand
        f.write("4\t\tzeta\t\n")
    return root


def test_c6_c7_missing_values_in_side_information(run_dir, quiet_config):
    root = _write_regression_dataset(str(run_dir))
    config = Config(
        model="BPR",
        dataset="nanset",
        config_dict=dict(
            quiet_config,
            data_path=root,
            load_col={"inter": ["user_id", "item_id", "rating"], "item": ["item_id", "price", "brand", "tags"]},
            normalize_all=False,
        ),
    )
    dataset = create_dataset(config)
    feat = dataset.item_feat.set_index("item_id")  # pandas frame before build(); ids are internal
    row = {token: idx for idx, token in enumerate(dataset.field2id_token["item_id"])}
    price = feat["price"]
    assert not price.isna().any()  # C7: float NaN filled with the column mean
    assert price[row["2"]] == price[row["4"]] == 20.0
    assert feat["brand"][row["3"]] == 0  # missing token -> PAD
    assert len(feat["tags"][row["2"]]) == 0  # C6: missing sequence -> empty
    assert len(feat["tags"][row["1"]]) == 2


def test_c8_series_agg_len_is_elementwise_inside_scope():
    series = pd.Series([np.array([1, 2]), np.array([3]), np.array([4, 5, 6])])
    with compat._elementwise_len_agg():
        lengths = series.agg(len)
    assert list(lengths) == [2, 1, 3]
    assert pd.Series.agg is not None  # restored (no exception on normal use)
    assert series.agg("count") == 3


def test_c3_checkpoint_loads_weights_only_after_a_run(run_dir, quiet_config):
    result = run_recbole("BPR", "ml-100k", config_dict=dict(quiet_config, epochs=1), cmd_args=[])
    checkpoint = torch.load(result["checkpoint"], weights_only=True)
    assert checkpoint["meta"]["model"] == "BPR"
    assert isinstance(checkpoint["config"]["MODEL_TYPE"], str)


def test_ext_collector_topk_equals_recbole_collector(quiet_config):
    """ExtCollector builds rec.items / rec.topk from one top-k and the positive pairs (no [B, N] matrix);
    every collected key must equal RecBole's Collector on the same batch (duplicate positives included)."""
    from recbole.evaluator.collector import Collector

    from recbole_ext.config import Config
    from recbole_ext.evaluator.collector import ExtCollector

    config = Config("BPR", "ml-100k", config_dict=dict(quiet_config, metrics=["Recall", "NDCG", "Hit", "GAUC", "ItemCoverage"], valid_metric="Recall@3",
                                                          topk=[3, 7], eval_args={"mode": "full", "split": {"RS": [0.8, 0.1, 0.1]}}))
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(9, 40, generator=generator)
    scores[:, 5] = scores[:, 6]  # ties
    positive_u = torch.randint(0, 9, (30,), generator=generator)
    positive_i = torch.randint(0, 40, (30,), generator=generator)
    positive_u, positive_i = torch.cat([positive_u, positive_u[:4]]), torch.cat([positive_i, positive_i[:4]])
    ours, theirs = ExtCollector(config), Collector(config)
    for collector in (ours, theirs):
        collector.eval_batch_collect(scores, None, positive_u, positive_i)
    assert ours.register.need("rec.topk") and ours.register.need("rec.meanrank")
    for key in ("rec.items", "rec.topk", "rec.meanrank"):
        a, b = ours.data_struct.get(key), theirs.data_struct.get(key)
        assert a.dtype == b.dtype and torch.equal(a, b), key


def test_c14_recbole_torch_load_sites_are_weights_only_and_idempotent(run_dir):
    import importlib

    compat.apply()
    for name in compat.TORCH_LOAD_MODULES:
        proxy = importlib.import_module(name).torch
        assert isinstance(proxy, compat._TorchProxy) and proxy._module is torch  # not wrapped twice
        assert proxy.cat is torch.cat and proxy.nn is torch.nn  # everything else is torch
    other = {
        "dense": np.arange(6, dtype=np.float32).reshape(2, 3),
        "matrix": np.matrix([[1.0, 2.0]]),
        "sparse": sp.csr_matrix(np.array([[0.0, 2.0], [3.0, 0.0]])).tocoo(),
        "ragged": np.array([np.array([1, 2]), np.array([3])], dtype=object),
        "count": np.int64(7),
        "tensor": torch.ones(2),
        "layer": torch.nn.Linear(2, 2),
    }
    proxy = importlib.import_module("recbole.trainer.trainer").torch
    proxy.save({"config": {"model": "X"}, "state_dict": {}, "other_parameter": other}, "c.pth", pickle_protocol=4)
    torch.load("c.pth", weights_only=True)  # readable without an allow-list
    back = proxy.load("c.pth")["other_parameter"]
    assert back["dense"].dtype == np.float32 and np.array_equal(back["dense"], other["dense"])
    assert isinstance(back["matrix"], np.matrix) and np.array_equal(back["matrix"], other["matrix"])
    assert back["sparse"].format == "coo" and np.array_equal(back["sparse"].toarray(), other["sparse"].toarray())
    assert [list(x) for x in back["ragged"]] == [[1, 2], [3]]
    assert back["count"] == 7 and torch.equal(back["tensor"], other["tensor"])
    assert "layer" not in back  # a sub-module's weights come with the state_dict, not load_other_parameter


def test_c15_recbole_quick_start_patched_once_and_tune_is_lazy():
    import recbole.quick_start as package
    import recbole.quick_start.quick_start as module

    compat.apply()
    assert package.load_data_and_model is compat.load_data_and_model is module.load_data_and_model
    assert compat._is_patched(module.objective_function) and package.objective_function is module.objective_function
    assert isinstance(module.tune, compat._LazyTune) or module.tune.__name__ == "ray.tune"


class _OpensFile:
    """Unpickling this creates a file: the stand-in for code run from a pickle."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_c16_recbole_pickled_data_files_not_written_and_refused(run_dir, quiet_config, monkeypatch):
    import sys

    import pytest
    from recbole.config import Config as RecBoleConfig
    from recbole.data import create_dataset as recbole_create_dataset
    from recbole.data import data_preparation as recbole_data_preparation

    monkeypatch.setattr(sys, "argv", sys.argv[:1])
    keys = dict(quiet_config, save_dataset=True, save_dataloaders=True)
    config = RecBoleConfig(model="BPR", dataset="ml-100k", config_dict=keys)
    with pytest.warns(UserWarning, match="not saved"):
        recbole_data_preparation(config, recbole_create_dataset(config))
    assert not os.path.exists("saved") or os.listdir("saved") == []  # no pickle to meet later
    import pickle

    marker = os.path.abspath("code-ran")
    os.makedirs("saved", exist_ok=True)
    for name in ("ml-100k-Dataset.pth", "ml-100k-for-BPR-dataloader.pth"):  # RecBole's default names
        with open(os.path.join("saved", name), "wb") as f:
            pickle.dump(_OpensFile(marker), f)
    with pytest.raises(compat.UnsafeCheckpointError, match="ml-100k-Dataset.pth"):
        recbole_create_dataset(config)
    os.remove(os.path.join("saved", "ml-100k-Dataset.pth"))
    with pytest.raises(compat.UnsafeCheckpointError, match="dataloader.pth"):
        recbole_data_preparation(config, recbole_create_dataset(config))
    assert not os.path.exists(marker)


def test_c17_recbole_config_executes_nothing_from_files_or_the_command_line(tmp_path, monkeypatch):
    """RecBole's own Config (a RecBole user's script) reads YAML safely and parses strings as literals."""
    from recbole.config import Config as RecBoleConfig

    assert "C17" in " ".join(compat.PATCHES)
    compat.apply()  # twice: no change
    marker = tmp_path / "ran"
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(f'epochs: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(yaml.YAMLError):
        RecBoleConfig("BPR", "ml-100k", config_file_list=[str(bad_yaml)])
    monkeypatch.setattr("sys.argv", ["x", f"--learning_rate=__import__('os').system('touch {marker}')",
                                     "--epochs=3", "--eval_args={'split': {'RS': [0.8, 0.1, 0.1]}}", "--reproducibility=false"])
    config = RecBoleConfig("BPR", "ml-100k", config_dict={"topk": "[5, 10]"})
    assert not marker.exists()
    assert config["learning_rate"].startswith("__import__")  # kept as text, never evaluated
    assert config["epochs"] == 3 and config["topk"] == [5, 10] and config["reproducibility"] is False
    assert config["eval_args"]["split"] == {"RS": [0.8, 0.1, 0.1]}


def test_c18_ksr_relation_matrix_in_the_embeddings_dtype():
    from recbole.model.sequential_recommender.ksr import KSR

    assert "C18" in " ".join(compat.PATCHES)
    before = KSR.__init__
    compat.apply()
    assert KSR.__init__ is before  # idempotent
    # end to end (trains and evaluates a KSR on real data): tests/test_model_zoo.py::...[KSR]


def test_c19_missing_optional_package_is_named_with_the_extra(monkeypatch):
    """A RecBole model whose optional package is missing stops at lookup, naming the package and the extra,
    through RecBole's get_model (a RecBole user's script) and ours (not "unknown model")."""
    import importlib.util

    import recbole.quick_start.quick_start as recbole_quick_start
    import recbole.utils

    from recbole_ext import registry
    from recbole_ext.cli import is_input_error
    from recbole_ext.errors import MissingPackageError

    assert "C19" in " ".join(compat.PATCHES)
    patched = recbole.utils.get_model
    compat.apply()
    assert recbole.utils.get_model is patched and recbole_quick_start.get_model is patched  # idempotent, re-bound
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "faiss" else real_find_spec(name, *a))
    for lookup in (recbole.utils.get_model, recbole_quick_start.get_model, registry.get_model):
        with pytest.raises(MissingPackageError, match=r"NCL needs the optional package\(s\) faiss.*requirements-zoo.txt"):
            lookup("NCL")
    with pytest.raises(MissingPackageError) as err:
        registry.get_model("NCL")
    assert isinstance(err.value, ImportError) and is_input_error(err.value)  # the command line exits 2
    assert registry.get_model("BPR").__name__ == "BPR"  # models without optional packages are unaffected


def test_c20_recbole_sine_does_not_leave_anomaly_detection_on():
    import subprocess
    import sys

    import torch

    assert "C20" in " ".join(compat.PATCHES)
    assert not torch.is_anomaly_enabled()
    compat.apply()  # twice: still off
    assert not torch.is_anomaly_enabled()
    code = ("import torch{}; import recbole_ext; import recbole.model.sequential_recommender.sine; "
            "print(torch.is_anomaly_enabled())")
    for setup, expected in (("", "False"), ("; torch.autograd.set_detect_anomaly(True)", "True")):
        out = subprocess.run([sys.executable, "-c", code.format(setup)], capture_output=True, text=True, check=True)
        assert out.stdout.strip().splitlines()[-1] == expected  # a user's own choice is kept
