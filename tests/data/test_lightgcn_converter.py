"""LightGCN text layout -> RecBole pre-split atomic files (benchmark_filename), split kept exactly."""

import os
import subprocess
import sys

import numpy as np
import pytest

from recbole_ext.config import Config
from recbole_ext.data.lightgcn_converter import convert, read_lightgcn
from recbole_ext.errors import DatasetError
from recbole_ext.utils import create_dataset, data_preparation
from tests.helpers import REPO as ROOT

TRAIN_LINES = "0 0 1 2\n1 2 3\n2 0 4 5 6\n3 1 6\n"
TEST_LINES = "0 3\n1 0 6\n2 2\n3 4 5\n"


def write(path, text):
    with open(path, "w", newline="") as f:
        f.write(text)
    return str(path)


def pairs_of(text):
    out = set()
    for line in text.strip().splitlines():
        tok = line.split()
        out |= {(tok[0], t) for t in tok[1:]}
    return out


def dataset_pairs(ds):
    users = ds.id2token(ds.uid_field, ds.inter_feat[ds.uid_field].numpy())
    items = ds.id2token(ds.iid_field, ds.inter_feat[ds.iid_field].numpy())
    return set(zip(users.tolist(), items.tolist()))


def load(info, quiet_config, model="Pop"):
    cfg = dict(
        quiet_config,
        data_path=info["data_path"],
        benchmark_filename=info["benchmark_filename"],
        load_col=info["load_col"],
        metrics=["Recall", "NDCG"],
        topk=[2],
        valid_metric="NDCG@2",
    )
    config = Config(model=model, dataset=info["dataset"], config_dict=cfg)
    dataset = create_dataset(config)
    return config, dataset, data_preparation(config, dataset)


def test_lines_layout_keeps_split(run_dir, quiet_config):
    train = write(run_dir / "train.txt", TRAIN_LINES)
    test = write(run_dir / "test.txt", TEST_LINES)
    info = convert(train, test, str(run_dir / "data"), "toy")
    assert info["counts"] == {"train": 11, "test": 6, "valid": 0}
    _, _, (train_data, valid_data, test_data) = load(info, quiet_config)
    assert dataset_pairs(train_data.dataset) == pairs_of(TRAIN_LINES)
    assert dataset_pairs(test_data.dataset) == pairs_of(TEST_LINES)
    assert len(valid_data.dataset) == 0 and len(valid_data) == 0  # placeholder: header only
    # the test-time history mask is exactly the train set (nothing of the test hidden)
    ds = test_data.dataset
    history = test_data.uid2history_item
    for uid in range(1, ds.user_num):
        user = ds.id2token(ds.uid_field, uid)
        hist = {ds.id2token(ds.iid_field, i) for i in np.asarray(history[uid]).tolist()}
        assert hist == {i for u, i in pairs_of(TRAIN_LINES) if u == user}


def test_table_layout_lastfm_style(run_dir, quiet_config):
    """user \\t item \\t weight, CRLF, scientific-notation weights; a test-only item and user survive."""
    train = write(run_dir / "data1.txt", "1\t10\t5\r\n1\t11\t3.2466e+05\r\n2\t10\t7\r\n3\t12\t1\r\n")
    test = write(run_dir / "test1.txt", "1\t12\t2\r\n2\t13\t4\r\n4\t10\t1\r\n")
    info = convert(train, test, str(run_dir / "data"), "toyfm")
    assert info["load_col"] == {"inter": ["user_id", "item_id", "weight"]}
    _, _, (train_data, _, test_data) = load(info, quiet_config)
    assert dataset_pairs(train_data.dataset) == {("1", "10"), ("1", "11"), ("2", "10"), ("3", "12")}
    assert dataset_pairs(test_data.dataset) == {("1", "12"), ("2", "13"), ("4", "10")}
    weights = sorted(train_data.dataset.inter_feat["weight"].tolist())
    assert weights == [1.0, 5.0, 7.0, 324660.0]


@pytest.mark.parametrize(
    "text, line",
    [("0 1 2\n1 2 x3\n", 2), ("0 1\n\n2 1.5 3\n", 3), ("u0 1 2\n", 1)],
)
def test_non_integer_token_names_file_and_line(run_dir, text, line):
    path = write(run_dir / "bad.txt", text)
    with pytest.raises(DatasetError, match=rf"bad\.txt, line {line}: token .* is not an integer"):
        read_lightgcn(path)


def test_bad_weight_and_missing_file(run_dir):
    path = write(run_dir / "bad.tsv", "1\t2\tmany\n")
    with pytest.raises(DatasetError, match=r"bad\.tsv, line 1: weight 'many'"):
        read_lightgcn(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_lightgcn(str(run_dir / "missing.txt"))


def test_gfcf_on_converted_split_end_to_end(run_dir, quiet_config):
    """The converted split runs through the pipeline (no validation set) with the python -m entry point."""
    train = write(run_dir / "train.txt", TRAIN_LINES)
    test = write(run_dir / "test.txt", TEST_LINES)
    out = subprocess.run(
        [sys.executable, "-m", "recbole_ext.data.lightgcn_converter", "--train", train, "--test", test,
         "--name", "toy", "--out", str(run_dir / "data")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert os.path.exists(run_dir / "data" / "toy" / "toy.valid.inter")
    from recbole_ext.quick_start import run_recbole

    info = {"data_path": str(run_dir / "data"), "dataset": "toy", "benchmark_filename": ["train", "valid", "test"],
            "load_col": {"inter": ["user_id", "item_id"]}}
    result = run_recbole(
        "GFCF", "toy",
        config_dict=dict(quiet_config, data_path=info["data_path"], benchmark_filename=info["benchmark_filename"],
                         gfcf_k=2, metrics=["Recall"], topk=[2], valid_metric="Recall@2"),
    )
    assert result["best_valid_result"] is None  # empty placeholder valid split: validation skipped
    assert 0.0 <= result["test_result"]["recall@2"] <= 1.0
