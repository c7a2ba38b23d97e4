"""Config priority, name resolution, trainer resolution, offline ml-100k and bad-input errors."""

import os
import sys

import pytest
import recbole
from recbole.trainer import Trainer as RecBoleTrainer
from recbole.trainer import TraditionalTrainer
from recbole.utils import ModelType

from recbole_ext import options, registry
from recbole_ext.config import Config
from recbole_ext.errors import ConfigError, DatasetError, DatasetNotFoundError, UnknownNameError
from recbole_ext.trainer import ExtTrainerMixin
from recbole_ext.utils import create_dataset, get_model, get_trainer
from tests.helpers import tiny_config, write_tiny_dataset


@pytest.fixture
def own_properties(tmp_path, monkeypatch):
    """A temporary recbole_ext properties folder with a BPR default and an alias."""
    props = tmp_path / "props"
    (props / "model").mkdir(parents=True)
    (props / "overall.yaml").write_text("trainer: ~\nrerank: ~\nresults_dir: saved/results\nresume_checkpoint: ~\n")
    (props / "model" / "BPR.yaml").write_text("embedding_size: 16\nreg_marker: from_package\n")
    (props / "model" / "TinyBPR.yaml").write_text("embedding_size: 12\n")
    monkeypatch.setattr(options, "PROPERTIES_DIR", str(props))
    monkeypatch.setitem(registry.MODEL_ALIASES, "TinyBPR", "BPR")
    return props


def test_priority_package_file_dict_cmdline(run_dir, quiet_config, own_properties):
    # RecBole's BPR.yaml says 64; our package default says 16.
    assert Config("BPR", "ml-100k", config_dict=quiet_config)["embedding_size"] == 16
    config_file = run_dir / "a.yaml"
    config_file.write_text("embedding_size: 24\nlearning_rate: 0.5\n")
    config = Config("BPR", "ml-100k", config_file_list=[str(config_file)], config_dict=quiet_config)
    assert config["embedding_size"] == 24 and config["reg_marker"] == "from_package"
    config = Config(
        "BPR", "ml-100k", config_file_list=[str(config_file)], config_dict=dict(quiet_config, embedding_size=32)
    )
    assert config["embedding_size"] == 32 and config["learning_rate"] == 0.5
    config = Config(
        "BPR",
        "ml-100k",
        config_file_list=[str(config_file)],
        config_dict=dict(quiet_config, embedding_size=32),
        cmd_args=["--embedding_size=40"],
    )
    assert config["embedding_size"] == 40


def test_properties_files_are_read_as_yaml(run_dir, quiet_config):
    path = run_dir / "exp.properties"
    path.write_text("embedding_size: 8\nepochs: 3\n")
    config = Config("BPR", "ml-100k", config_file_list=[str(path)], config_dict=quiet_config)
    assert config["embedding_size"] == 8 and config["epochs"] == 3


def test_alias_resolves_with_layered_defaults(run_dir, quiet_config, own_properties):
    config = Config("TinyBPR", "ml-100k", config_dict=quiet_config)
    assert config["model"] == "TinyBPR"
    assert config.model_class is get_model("BPR")
    assert config["embedding_size"] == 12  # alias file over the target model's file
    assert config["reg_marker"] == "from_package"


def test_pytest_argv_is_not_configuration(quiet_config, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest", "--epochs=99", "-q"])
    assert Config("BPR", "ml-100k", config_dict=quiet_config)["epochs"] != 99


def test_model_name_resolution():
    from recbole.model.general_recommender.bpr import BPR

    assert get_model("BPR") is BPR
    with pytest.raises(UnknownNameError) as err:
        get_model("BPRR")
    assert "Closest matches: BPR" in str(err.value)


def test_trainer_resolution(run_dir, quiet_config):
    config = Config("BPR", "ml-100k", config_dict=quiet_config)
    trainer = get_trainer(config["MODEL_TYPE"], "BPR", config)
    assert issubclass(trainer, ExtTrainerMixin) and issubclass(trainer, RecBoleTrainer)
    ease = get_trainer(ModelType.TRADITIONAL, "EASE", Config("EASE", "ml-100k", config_dict=quiet_config))
    assert issubclass(ease, TraditionalTrainer) and issubclass(ease, ExtTrainerMixin)
    config = Config("BPR", "ml-100k", config_dict=dict(quiet_config, trainer="Traditional"))
    assert issubclass(get_trainer(config["MODEL_TYPE"], "BPR", config), TraditionalTrainer)
    config = Config("BPR", "ml-100k", config_dict=dict(quiet_config, trainer="NoSuch"))
    with pytest.raises(UnknownNameError, match="unknown trainer 'NoSuch'"):
        get_trainer(config["MODEL_TYPE"], "BPR", config)


def test_ml100k_offline_falls_back_to_bundled_copy(run_dir, quiet_config):
    config = Config("BPR", "ml-100k", config_dict=dict(quiet_config, data_path=str(run_dir / "empty")))
    bundled = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")
    assert os.path.samefile(config["data_path"], bundled)


def test_ml100k_local_copy_is_preferred(run_dir, quiet_config):
    local = run_dir / "data" / "ml-100k"
    local.mkdir(parents=True)
    (local / "ml-100k.inter").write_text("user_id:token\titem_id:token\n1\t1\n")
    config = Config("BPR", "ml-100k", config_dict=dict(quiet_config, data_path=str(run_dir / "data")))
    assert config["data_path"] == str(local)


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
def test_unknown_metric_lists_close_names(quiet_config):
    with pytest.raises(UnknownNameError) as err:
        Config("BPR", "ml-100k", config_dict=dict(quiet_config, metrics=["Recal"], valid_metric="Recal@10"))
    assert "recall" in str(err.value)


def test_valid_metric_must_be_computed(quiet_config):
    with pytest.raises(ConfigError, match="valid_metric 'MRR@10' is not computed"):
        Config("BPR", "ml-100k", config_dict=dict(quiet_config, metrics=["Recall"], valid_metric="MRR@10"))


def test_missing_config_file(quiet_config):
    with pytest.raises(ConfigError, match="config file not found: nope.yaml"):
        Config("BPR", "ml-100k", config_file_list=["nope.yaml"], config_dict=quiet_config)


def test_missing_dataset_names_the_searched_path(run_dir, quiet_config):
    config = Config("BPR", "ghost", config_dict=dict(quiet_config, data_path=str(run_dir)))
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset(config)
    assert os.path.join(str(run_dir), "ghost", "ghost.inter") in str(err.value)


def test_malformed_atomic_line_names_file_and_line(run_dir, quiet_config):
    root = write_tiny_dataset(str(run_dir))
    path = os.path.join(root, "tiny", "tiny.inter")
    lines = open(path).read().split("\n")
    lines[5] = lines[5] + "\textra"
    open(path, "w").write("\n".join(lines))
    config = Config("BPR", "tiny", config_dict=tiny_config(root, quiet_config))
    with pytest.raises(DatasetError) as err:
        create_dataset(config)
    message = str(err.value)
    assert path in message and "line 6" in message and "expected 4 fields" in message


def test_non_numeric_float_field_names_file_and_line(run_dir, quiet_config):
    root = write_tiny_dataset(str(run_dir))
    path = os.path.join(root, "tiny", "tiny.item")
    lines = open(path).read().split("\n")
    fields = lines[3].split("\t")
    fields[1] = "cheap"
    lines[3] = "\t".join(fields)
    open(path, "w").write("\n".join(lines))
    config = Config("BPR", "tiny", config_dict=tiny_config(root, quiet_config))
    with pytest.raises(DatasetError) as err:
        create_dataset(config)
    assert "tiny.item, line 4" in str(err.value) and "'price' must be a number" in str(err.value)


def test_bad_header_type(run_dir, quiet_config):
    root = write_tiny_dataset(str(run_dir))
    path = os.path.join(root, "tiny", "tiny.inter")
    text = open(path).read().replace("rating:float", "rating:decimal", 1)
    open(path, "w").write(text)
    config = Config("BPR", "tiny", config_dict=tiny_config(root, quiet_config))
    with pytest.raises(DatasetError, match="line 1: field 'rating' has unknown type 'decimal'"):
        create_dataset(config)


def test_pairwise_model_needs_negative_sampling(quiet_config):
    with pytest.raises(ConfigError, match="trains on \\(positive, negative\\) pairs"):
        Config("BPR", "ml-100k", config_dict=dict(quiet_config, train_neg_sample_args=None))
