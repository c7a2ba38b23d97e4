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
from tests.helpers import run_cli, tiny_config, write_tiny_dataset


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


# ------------------------------------------------------------------------------------------------
# misspelt and unknown keys (issue 13)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag,close", [("--epoch=1", "epochs"), ("--learning_rat=0.1", "learning_rate"),
                                        ("--Learning_Rate=0.1", "learning_rate")])
def test_misspelt_command_line_key_stops_with_the_close_match(quiet_config, flag, close):
    key = flag[2:].split("=")[0]
    with pytest.raises(ConfigError) as err:
        Config("BPR", "ml-100k", config_dict=quiet_config, cmd_args=[flag])
    message = str(err.value)
    assert f"unknown config key '{key}' (command line): did you mean '{close}'?" in message
    assert f"custom_keys: [{key}]" in message


def test_misspelt_key_names_its_file_or_dict(run_dir, quiet_config):
    path = run_dir / "a.yaml"
    path.write_text("embeding_size: 8\n")
    with pytest.raises(ConfigError, match=f"'embeding_size' \\(config file {path}\\): did you mean 'embedding_size'"):
        Config("BPR", "ml-100k", config_file_list=[str(path)], config_dict=quiet_config)
    with pytest.raises(ConfigError, match="'train_batch_sise' \\(config_dict\\): did you mean 'train_batch_size'"):
        Config("BPR", "ml-100k", config_dict=dict(quiet_config, train_batch_sise=64))


def test_model_keys_are_known_and_custom_keys_declare_ones_own(quiet_config, caplog):
    # a key of the model's own YAML (SASRec's n_layers) and of ours (BaM's) are known
    Config("SASRec", "ml-100k", config_dict=dict(quiet_config, n_layers=1, train_neg_sample_args=None))
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        Config("BPR", "ml-100k", config_dict=dict(quiet_config, epoch=3))
    caplog.clear()
    declared = dict(quiet_config, epoch=3, my_note="x", custom_keys=["epoch", "my_note"])
    config = Config("BPR", "ml-100k", config_dict=declared)
    assert config["epoch"] == 3 and config["epochs"] == 300
    assert "no default file defines" not in caplog.text


def test_other_unknown_keys_are_listed_in_one_warning(quiet_config, caplog):
    with caplog.at_level("WARNING"):
        config = Config("BPR", "ml-100k", config_dict=dict(quiet_config, zzz_alpha=1, qq=2),
                        cmd_args=["--my_flag_xyz=3"])
    assert config["zzz_alpha"] == 1
    warnings = [r.getMessage() for r in caplog.records if "no default file defines" in r.getMessage()]
    assert len(warnings) == 1
    assert "zzz_alpha (config_dict)" in warnings[0] and "qq (config_dict)" in warnings[0]
    assert "my_flag_xyz (command line)" in warnings[0]


def test_custom_keys_must_be_names(quiet_config):
    with pytest.raises(ConfigError, match="custom_keys must be a list of key names"):
        Config("BPR", "ml-100k", config_dict=dict(quiet_config, custom_keys=[1]))


@pytest.mark.parametrize("flag,close", [("--epoch=1", "epochs"), ("--learning_rat=0.1", "learning_rate")])
def test_cli_misspelt_key_exits_2_before_anything_runs(run_dir, flag, close):
    proc = run_cli(["--model=BPR", "--dataset=ml-100k", flag, "--state=WARNING"], cwd=run_dir, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"did you mean '{close}'?" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run_dir / "saved").exists() and not (run_dir / "log").exists()


# ------------------------------------------------------------------------------------------------
# nonsensical values refused before anything runs
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key,value,message", [
    ("train_batch_size", 0, "train_batch_size must be a whole number >= 1, got 0"),
    ("eval_batch_size", -5, "eval_batch_size must be a whole number >= 1, got -5"),
    ("train_batch_size", 64.5, "train_batch_size must be a whole number >= 1, got 64.5"),
    ("learning_rate", -0.1, "learning_rate must be a finite number >= 0, got -0.1"),
    ("learning_rate", "fast", "learning_rate must be a finite number >= 0, got 'fast'"),
    ("learning_rate", float("nan"), "learning_rate must be a finite number >= 0, got nan"),
    ("epochs", -1, "epochs must be a whole number >= 0"),
    ("epochs", "ten", "epochs must be a whole number >= 0 .*got 'ten'"),
    ("topk", 0, "topk must be a whole number >= 1 or a list of them .*got 0"),
    ("topk", [10, -1], "topk must be .*got \\[10, -1\\]"),
    ("valid_metric", "NDCG@20", "valid_metric 'NDCG@20' needs @20 among topk \\[10\\]: add 20 to topk or use NDCG@10"),
    ("eval_step", -1, "eval_step must be a whole number >= 0 \\(0 = no validation"),
    ("stopping_step", -1, "stopping_step must be a whole number >= 0"),
])
def test_nonsensical_values_are_refused(quiet_config, key, value, message):
    with pytest.raises(ConfigError, match=message):
        Config("BPR", "ml-100k", config_dict={**quiet_config, key: value})


def test_sensible_edge_values_are_kept(quiet_config):
    config = Config("BPR", "ml-100k", config_dict=dict(quiet_config, train_batch_size=1024.0, eval_step=0, epochs=0,
                                                       learning_rate=0, topk="5,10", valid_metric="Recall@5"))
    assert config["train_batch_size"] == 1024 and isinstance(config["train_batch_size"], int)
    assert config["eval_step"] == 0 and config["epochs"] == 0 and config["topk"] == [5, 10]


def test_cli_nonsensical_value_exits_2_before_training(run_dir):
    proc = run_cli(["--model=BPR", "--dataset=ml-100k", "--train_batch_size=0", "--state=WARNING"], cwd=run_dir,
                   timeout=120)
    assert proc.returncode == 2 and "train_batch_size must be a whole number >= 1, got 0" in proc.stderr
    assert not (run_dir / "saved").exists() and not (run_dir / "log").exists()


# ------------------------------------------------------------------------------------------------
# config files and the command line
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,message", [
    ("", "config file {path} is empty"),
    ("# only a comment\n", "config file {path} is empty"),
    ("- epochs\n- 3\n", "config file {path} is not a 'key: value' mapping \\(it holds a list\\)"),
    ("epochs: 3\nembedding_size: [8\n", "{path}, line 3: not valid YAML"),
    ("embedding_size=8\nepochs=3\n", "line 1 'embedding_size=8' is in key=value form, which is not read: "
                                     "config files are YAML, write 'embedding_size: 8'"),
    ("epochs: 3\nembedding_size=8\n", "{path}, line 3: not valid YAML.*line 2 'embedding_size=8' is in key=value form"),
])
def test_bad_config_files_name_the_file(run_dir, quiet_config, text, message):
    path = run_dir / "exp.properties"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.format(path=str(path).replace("\\", "\\\\"))):
        Config("BPR", "ml-100k", config_file_list=[str(path)], config_dict=quiet_config)


def test_repeated_command_line_flag(quiet_config):
    with pytest.raises(ConfigError, match="--epochs is given twice with different values \\('1' and '2'\\)"):
        Config("BPR", "ml-100k", config_dict=quiet_config, cmd_args=["--epochs=1", "--epochs=2"])
    config = Config("BPR", "ml-100k", config_dict=quiet_config, cmd_args=["--epochs=1", "--epochs=1"])
    assert config["epochs"] == 1


def test_command_line_values_with_equals_sign(quiet_config):
    config = Config("BPR", "ml-100k", config_dict=quiet_config, cmd_args=["--wandb_project=a=b"])
    assert config["wandb_project"] == "a=b"


def test_config_dict_keys_must_be_names(quiet_config):
    with pytest.raises(ConfigError, match="config_dict keys must be option names \\(strings\\), got 1"):
        Config("BPR", "ml-100k", config_dict={**quiet_config, 1: 2})
