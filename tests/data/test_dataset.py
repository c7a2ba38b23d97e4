"""recbole_ext.data.dataset: header-only files, duplicate interactions, rows RecBole's filters drop, and the
refusal of a dataset whose items lack side information where a method needs it."""

import logging
import os

import pytest

from recbole_ext.config import Config
from recbole_ext.data import create_dataset
from recbole_ext.data import morec_data
from recbole_ext.data.dataset import require_side_info
from recbole_ext.errors import DatasetError
from tests.helpers import write_tiny_dataset

LOAD_COL = {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "price", "genre"]}


def build(root, name="tiny", **extra):
    config = Config("BPR", name, config_dict={"data_path": str(root), "state": "WARNING", "load_col": LOAD_COL,
                                              **extra}, cmd_args=[])
    return create_dataset(config)


def edit_lines(path, change):
    lines = open(path).read().splitlines()
    with open(path, "w") as f:
        f.write("\n".join(change(lines)) + "\n")


def warnings_of(caplog):
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return [m for m in messages if "dataset 'tiny'" in m]


@pytest.fixture
def root(tmp_path):
    return write_tiny_dataset(str(tmp_path))


def inter_path(root):
    return os.path.join(root, "tiny", "tiny.inter")


def item_path(root):
    return os.path.join(root, "tiny", "tiny.item")


# --- header-only files -------------------------------------------------------------------------
def test_header_only_inter_file_is_refused_naming_the_file(root):
    edit_lines(inter_path(root), lambda lines: lines[:1] + [""])
    with pytest.raises(DatasetError, match=r"tiny\.inter: the file has a header but no data rows"):
        build(root)


def test_header_only_benchmark_training_file_is_refused_placeholders_are_not(root):
    lines = open(inter_path(root)).read().splitlines()
    for split, part in {"train": lines[1:250], "valid": [], "test": lines[250:]}.items():
        with open(os.path.join(root, "tiny", f"tiny.{split}.inter"), "w") as f:
            f.write("\n".join(lines[:1] + part) + "\n")
    assert build(root, benchmark_filename=["train", "valid", "test"]).inter_num == 320  # empty valid: fine
    with pytest.raises(DatasetError, match=r"tiny\.valid\.inter: the file has a header but no data rows"):
        build(root, benchmark_filename=["valid", "train", "test"])


# --- a clean dataset says nothing --------------------------------------------------------------
def test_clean_dataset_reports_nothing(root, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = build(root)
    assert dataset.dropped_interactions == {} and dataset.missing_feature_rows == {}
    assert warnings_of(caplog) == []


# --- duplicates --------------------------------------------------------------------------------
def test_duplicates_are_reported_with_count_examples_and_fix(root, caplog):
    edit_lines(inter_path(root), lambda lines: lines + lines[1:3])  # rows 1 and 2 again
    first = open(inter_path(root)).read().splitlines()[1].split("\t")
    with caplog.at_level(logging.WARNING):
        dataset = build(root)
    (message,) = warnings_of(caplog)
    assert "2 duplicate interactions (same user_id, item_id, timestamp" in message
    assert f"({first[0]}, {first[1]}, {float(first[3])})" in message
    assert "rm_dup_inter: first" in message
    assert dataset.inter_num == 40 * 8 + 2  # kept, as RecBole does: the warning is the point


def test_duplicates_dropped_with_rm_dup_inter_are_counted(root, caplog):
    edit_lines(inter_path(root), lambda lines: lines + lines[1:3])
    with caplog.at_level(logging.WARNING):
        dataset = build(root, rm_dup_inter="first")
    assert dataset.dropped_interactions == {"rm_dup_inter": 2} and dataset.inter_num == 40 * 8
    (message,) = warnings_of(caplog)
    assert "removed 2 of 322 interactions (2 by rm_dup_inter)" in message and "duplicate" not in message


def test_same_pair_at_another_time_is_not_a_duplicate(root, caplog):
    def repeat_later(lines):
        user, item, rating, _ = lines[1].split("\t")
        return lines + [f"{user}\t{item}\t{rating}\t99999"]

    edit_lines(inter_path(root), repeat_later)
    with caplog.at_level(logging.WARNING):
        build(root)
    assert warnings_of(caplog) == []


def test_duplicates_across_benchmark_files_say_rm_dup_inter_does_not_apply(root, caplog):
    lines = open(inter_path(root)).read().splitlines()
    header, rows = lines[0], lines[1:]
    splits = {"train": rows[:200], "valid": rows[200:260], "test": rows[260:] + rows[:1]}  # row 1 leaks into test
    for split, part in splits.items():
        with open(os.path.join(root, "tiny", f"tiny.{split}.inter"), "w") as f:
            f.write("\n".join([header] + part) + "\n")
    with caplog.at_level(logging.WARNING):
        build(root, benchmark_filename=["train", "valid", "test"], rm_dup_inter="first")
    (message,) = warnings_of(caplog)
    assert "1 duplicate interactions" in message and "benchmark_filename" in message


# --- rows dropped by RecBole's filters; side information ----------------------------------------
def drop_last_items(root, n=3):
    edit_lines(item_path(root), lambda lines: lines[:-n])  # items 28, 29, 30 have no .item row


def rows_of_items(root, items):
    rows = open(inter_path(root)).read().splitlines()[1:]
    return sum(row.split("\t")[1] in items for row in rows)


def test_interactions_of_items_without_item_row_are_counted_and_reported(root, caplog):
    drop_last_items(root)
    expected = rows_of_items(root, {"28", "29", "30"})
    assert expected > 0
    with caplog.at_level(logging.WARNING):
        dataset = build(root, filter_inter_by_user_or_item=True)
    assert dataset.dropped_interactions == {"filter_inter_by_user_or_item": expected}
    missing = dataset.missing_feature_rows["item"]
    assert sorted(missing.tokens) == ["28", "29", "30"] and missing.interactions == expected
    (message,) = warnings_of(caplog)
    assert f"removed {expected} of 320 interactions ({expected} by filter_inter_by_user_or_item)" in message
    assert f"3 items of the interactions ({expected} interactions" in message and "tiny.item" in message


def test_filters_are_counted_each(root):
    dataset = build(root, user_inter_num_interval="[5,inf)", item_inter_num_interval="[0,inf)",
                    val_interval={"rating": "[3,inf)"}, filter_inter_by_user_or_item=True)
    assert set(dataset.dropped_interactions) == {"val_interval", "user_inter_num_interval/item_inter_num_interval"}
    assert sum(dataset.dropped_interactions.values()) == 320 - dataset.inter_num


def test_filters_that_remove_everything_say_which(root):
    with pytest.raises(DatasetError, match=r"removed every row of inter_feat \(320 by user_inter_num_interval"):
        build(root, user_inter_num_interval="[100,inf)")


def test_morec_refuses_items_whose_interactions_were_dropped(root):
    drop_last_items(root)
    train = build(root, filter_inter_by_user_or_item=True).build()[0]
    with pytest.raises(DatasetError, match=r"MoRec \(item field 'price'\) needs the \.item row of every item, but 3 "
                                           r"items .* dropped their interactions"):
        morec_data.item_weight(train, {"morec_weight_field": "price"})


def test_morec_refuses_items_filled_with_recbole_defaults(root, caplog):
    drop_last_items(root)
    with caplog.at_level(logging.WARNING):
        dataset = build(root, filter_inter_by_user_or_item=False)
    assert dataset.dropped_interactions == {}
    assert "fill values" in warnings_of(caplog)[0]
    train = dataset.build()[0]  # a split carries the record: MoRec and metric inputs see the training split
    with pytest.raises(DatasetError, match=r"kept their interactions and filled .* mean"):
        morec_data.item_weight(train, {"morec_weight_field": "price"})
    with pytest.raises(DatasetError, match="data.item.price"):
        require_side_info(train, "item", "metric input 'data.item.price'")


def test_complete_item_file_passes_the_side_information_check(root):
    train = build(root).build()[0]
    require_side_info(train, "item", "MoRec")
    assert morec_data.item_weight(train, {"morec_weight_field": "price"}).shape[0] == train.item_num
