"""BaM's leave-one-out split (``bam_split: original``) vs RecBole's, on a hand-built table and on ml-100k."""

import os

import numpy as np
import pytest
from recbole.data.dataset import Dataset as RecBoleDataset

from recbole_ext import Config, create_dataset, data_preparation
from recbole_ext.data.bam_split import original_leave_one_out_index
from recbole_ext.errors import ConfigError
from tests.helpers import REPO

PROPS = os.path.join(REPO, "properties", "bam_ml-100k.yaml")
# user -> item sequence (chronological); n = 2, 3, 5 and another 5 (the catalogue needs > sampled_n items)
SEQUENCES = {"a": [11, 12], "b": [21, 22, 23], "c": [31, 32, 33, 34, 35], "d": [41, 42, 43, 44, 45]}


def write_table(root):
    folder = root / "short"
    folder.mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    t = 0
    for step in range(5):  # interleaved in time across users
        for user, items in SEQUENCES.items():
            if step < len(items):
                t += 1
                lines.append(f"{user}\t{items[step]}\t{t}")
    (folder / "short.inter").write_text("\n".join(lines) + "\n")
    return str(root)


def split_rows(root, quiet_config, split, model="BaM_REMI"):
    """{part: {user: [(history, target), ...]}} in external tokens."""
    config = Config(model, "short", config_dict={
        **quiet_config, "data_path": root, "load_col": None, "bam_split": split, "sampled_n": 4,
        "MAX_ITEM_LIST_LENGTH": 5, "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO",
                                                 "group_by": "user", "mode": "full"}})
    dataset = create_dataset(config)
    loaders = data_preparation(config, dataset)
    parts = {}
    for name, loader in zip(("train", "valid", "test"), loaders):
        inter = loader._dataset.inter_feat
        tok = lambda field, ids: dataset.id2token(field, ids)  # noqa: E731
        rows = {}
        for u, seq, n, target in zip(inter["user_id"].tolist(), inter["item_id_list"], inter["item_length"].tolist(),
                                     inter["item_id"].tolist()):
            history = [int(x) for x in tok("item_id", seq[:n].numpy())]
            rows.setdefault(str(tok("user_id", u)), []).append((history, int(tok("item_id", target))))
        parts[name] = rows
    return parts, config, loaders


def test_original_split_rows_for_short_users(tmp_path, quiet_config):
    parts, config, _ = split_rows(write_table(tmp_path), quiet_config, "original")
    # n = 2: tested on its last item, no valid row (it would have an empty history), not trained on
    assert parts["test"]["a"] == [([11], 12)] and "a" not in parts["valid"] and "a" not in parts["train"]
    # n = 3: validated on the second-to-last item, tested on the last; no training row
    assert parts["valid"]["b"] == [([21], 22)] and parts["test"]["b"] == [([21, 22], 23)]
    assert "b" not in parts["train"]
    # n = 5: train targets = all items but the last two (history = the items before each)
    assert parts["train"]["c"] == [([31], 32), ([31, 32], 33)]
    assert parts["valid"]["c"] == [([31, 32, 33], 34)] and parts["test"]["c"] == [([31, 32, 33, 34], 35)]
    # the training pool is the original's: users whose train sequence has >= 2 items (n >= 4)
    assert sorted(parts["train"]) == ["c", "d"]
    assert sorted(parts["test"]) == ["a", "b", "c", "d"] and sorted(parts["valid"]) == ["b", "c", "d"]


def test_recbole_split_rows_for_short_users(tmp_path, quiet_config):
    """What RecBole's min(2, rows - 1) does with the same table (the behaviour the option replaces)."""
    parts, _, _ = split_rows(write_table(tmp_path), quiet_config, "recbole")
    assert parts["train"]["a"] == [([11], 12)] and "a" not in parts["test"]  # n = 2: trained, never tested
    assert parts["train"]["b"] == [([21], 22)] and "b" not in parts["valid"]  # n = 3: loses its valid row
    assert parts["test"]["b"] == [([21, 22], 23)]
    assert parts["train"]["c"] == [([31], 32), ([31, 32], 33)] and parts["test"]["c"] == [([31, 32, 33, 34], 35)]


def test_training_sampler_draws_only_the_original_pool(tmp_path, quiet_config):
    """BaM's user sampler (train_sampler: user) never draws a user with fewer than 4 interactions."""
    _, config, (train, _, _) = split_rows(write_table(tmp_path), quiet_config, "original")
    dataset = train._dataset
    drawn = set()
    for batch in train:
        drawn |= set(dataset.id2token("user_id", batch["user_id"].numpy()).tolist())
    assert drawn == {"c", "d"}


def test_split_choice_changes_the_fingerprint(tmp_path, quiet_config):
    root = write_table(tmp_path)
    _, original, _ = split_rows(root, quiet_config, "original")
    _, recbole, _ = split_rows(root, quiet_config, "recbole")
    fo, fr = original["split_fingerprint"], recbole["split_fingerprint"]
    assert fo["sha256"] != fr["sha256"] and fo["test"]["rows"] == 4 and fr["test"]["rows"] == 3


def test_index_function_matches_recbole_for_users_with_three_rows_or_more():
    users = np.array([5, 7, 5, 9, 7, 5, 9, 7, 5, 9])  # 5: rows 0 2 5 8; 7: 1 4 7; 9: 3 6 9 (first seen 5, 7, 9)
    train, valid, test = original_leave_one_out_index(users)
    assert (train.tolist(), valid.tolist(), test.tolist()) == ([0, 2, 1, 3], [5, 4, 6], [8, 7, 9])
    grouped = [np.flatnonzero(users == u).tolist() for u in (5, 7, 9)]
    recbole = RecBoleDataset._split_index_by_leave_one_out(None, grouped, leave_one_num=2)
    assert [train.tolist(), valid.tolist(), test.tolist()] == recbole
    one_row = original_leave_one_out_index(np.array([3, 4, 4]))  # a user with one row: test only
    assert [p.tolist() for p in one_row] == [[], [1], [0, 2]]


def test_bad_eval_args_refused(tmp_path, quiet_config):
    config = Config("BaM_REMI", "short", config_dict={
        **quiet_config, "data_path": write_table(tmp_path), "load_col": None, "bam_split": "original", "sampled_n": 4,
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": "user", "mode": "full"}})
    with pytest.raises(ConfigError, match="bam_split"):
        data_preparation(config, create_dataset(config))


def test_ml100k_splits_coincide(quiet_config):
    """ml-100k users all have >= 20 interactions: the default switch changes no ml-100k number."""
    fingerprints = []
    for split in ("recbole", "original"):
        config = Config("BaM_REMI", "ml-100k", config_file_list=[PROPS], config_dict={**quiet_config, "bam_split": split})
        data_preparation(config, create_dataset(config))
        fingerprints.append(config["split_fingerprint"])
    assert fingerprints[0] == fingerprints[1]
    assert fingerprints[0]["test"]["rows"] == fingerprints[0]["valid"]["rows"] == 943


def test_bam_properties_default_to_the_original_split_and_others_do_not(quiet_config):
    with_props = Config("BaM_REMI", "ml-100k", config_file_list=[PROPS], config_dict=quiet_config)
    plain = Config("BaM_REMI", "ml-100k", config_dict=quiet_config)
    assert with_props["bam_split"] == "original" and plain["bam_split"] == "recbole"


def test_original_split_refuses_recbole_saved_dataloaders(tmp_path, quiet_config):
    """RecBole's pickled-loader path splits its own way: asking for both is refused, not silently ignored."""
    config = Config("BaM_REMI", "short", config_dict={
        **quiet_config, "data_path": write_table(tmp_path), "load_col": None, "bam_split": "original", "sampled_n": 4,
        "save_dataloaders": True, "checkpoint_dir": str(tmp_path / "saved")})
    with pytest.raises(ConfigError, match="saved dataloaders"):
        data_preparation(config, create_dataset(config))
