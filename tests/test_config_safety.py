"""Nothing from a file, a checkpoint, a params file or the command line is ever executed (issue 13).

Every hostile value below would have run under RecBole's ``Config`` (``eval`` of string values,
``yaml.FullLoader``): it would create the marker file ``PWNED`` in the working folder.
"""

import os

import pytest
import yaml
from recbole.config import Config as RecBoleConfig

from recbole_ext import checkpoint as ckpt
from recbole_ext.config import Config, SafeYamlLoader, parse_value
from recbole_ext.errors import ConfigError
from recbole_ext.io import atomic_torch_save
from recbole_ext.tune import parse_params_file
from tests.helpers import tiny_config, write_tiny_dataset

HOSTILE = "__import__('pathlib').Path('PWNED').touch()"


def assert_not_run(folder):
    assert not os.path.exists(os.path.join(str(folder), "PWNED")), "a configuration value was executed"


# ------------------------------------------------------------------------------------------------
# the literal parser gives RecBole's results for every ordinary value
# ------------------------------------------------------------------------------------------------
ORDINARY = ["1e-3", "0.001", "-5", "300", "1_000", "[10, 20]", "[64,32]", "(5, 10)", "5,10",
            "{'RS': [0.8, 0.1, 0.1]}", "{'valid': 'uni100', 'test': 'full'}", "None", "True", "False",
            "true", "FALSE", "'quoted'", "BPR", "uni100", "saved/results", "NDCG@10", "[Recall, NDCG]",
            "nan", "", "[0,inf)", "1/0"]


def recbole_conversion(text):
    # RecBole 1.2.1's own conversion (eval); the ordinary texts above are harmless. "1/0" raises there.
    try:
        return RecBoleConfig._convert_config_dict(None, {"k": text})["k"]
    except ZeroDivisionError:
        return text


@pytest.mark.parametrize("text", ORDINARY)
def test_parse_value_matches_recbole_on_ordinary_values(text):
    assert parse_value(text) == recbole_conversion(text)
    assert type(parse_value(text)) is type(recbole_conversion(text))


def test_parse_value_keeps_code_as_text(run_dir):
    for text in (HOSTILE, "open('PWNED', 'w')", "exec('import os')", "[x for x in ()]", "len", "1j"):
        assert parse_value(text) == text
    assert parse_value(42) == 42 and parse_value([1]) == [1]  # non-strings unchanged
    assert_not_run(run_dir)


# ------------------------------------------------------------------------------------------------
# command line, config_dict (trial values), YAML files
# ------------------------------------------------------------------------------------------------
def test_hostile_command_line_flag_is_kept_as_text(run_dir, quiet_config):
    config = Config("BPR", "ml-100k", config_dict=quiet_config, cmd_args=[f"--wandb_project={HOSTILE}"])
    assert config["wandb_project"] == HOSTILE
    assert_not_run(run_dir)


def test_hostile_config_dict_value_is_kept_as_text(run_dir, quiet_config):
    config = Config("BPR", "ml-100k", config_dict=dict(quiet_config, wandb_project=HOSTILE, topk="[5, 10]"))
    assert config["wandb_project"] == HOSTILE and config["topk"] == [5, 10]
    assert_not_run(run_dir)


def test_yaml_python_tags_are_refused(run_dir, quiet_config):
    path = run_dir / "evil.yaml"
    path.write_text("epochs: 1\nembedding_size: !!python/object/apply:os.system ['touch PWNED']\n")
    with pytest.raises(ConfigError) as err:
        Config("BPR", "ml-100k", config_file_list=[str(path)], config_dict=quiet_config)
    assert f"{path}, line 2" in str(err.value) and "python/object/apply" in str(err.value)
    assert_not_run(run_dir)


def test_yaml_floats_as_recbole_without_touching_global_loaders(run_dir, quiet_config):
    path = run_dir / "a.yaml"
    path.write_text("learning_rate: 1e-3\nweight_decay: 5E-4\n")
    config = Config("BPR", "ml-100k", config_file_list=[str(path)], config_dict=quiet_config)
    assert config["learning_rate"] == 0.001 and config["weight_decay"] == 0.0005
    assert yaml.load("1e-3", Loader=SafeYamlLoader) == 0.001
    assert yaml.safe_load("x: 1e-3") == {"x": "1e-3"}  # the global SafeLoader is unchanged (YAML 1.1)
    assert yaml.load("x: 1e-3", Loader=yaml.FullLoader) == {"x": "1e-3"}


def test_kd_dagfm_teacher_is_never_evaluated(run_dir, quiet_config):
    # RecBole's KD_DAGFM builds its teacher network with eval(config["teacher"])
    with pytest.raises(ConfigError, match=r"teacher must be one of \['CrossNet', 'CIN'\]"):
        Config("KD_DAGFM", "ml-100k", config_dict=dict(quiet_config, teacher=HOSTILE))
    assert_not_run(run_dir)


# ------------------------------------------------------------------------------------------------
# params files and trials
# ------------------------------------------------------------------------------------------------
def test_hostile_params_file(run_dir, quiet_config):
    path = run_dir / "hyper.test"
    path.write_text(f'wandb_project choice ["{HOSTILE}"]\n')
    space = parse_params_file(str(path))
    assert space["wandb_project"] == ("choice", [HOSTILE])
    # the trial's config_dict (tune._trial: base config updated by the sampled values)
    config = Config("BPR", "ml-100k", config_dict=dict(quiet_config, wandb_project=space["wandb_project"][1][0]))
    assert config["wandb_project"] == HOSTILE
    path.write_text(f"wandb_project choice {HOSTILE}\n")
    with pytest.raises(ConfigError, match="choice needs a Python list literal"):
        parse_params_file(str(path))
    path.write_text(f"learning_rate uniform {HOSTILE},1\n")
    with pytest.raises(ConfigError, match="uniform needs numbers"):
        parse_params_file(str(path))
    assert_not_run(run_dir)


def test_run_hyper_fixed_values_are_parsed_safely(run_dir):
    import run_hyper

    assert run_hyper._value(HOSTILE) == HOSTILE
    assert run_hyper._value("1e-3") == 0.001 and run_hyper._value("['Recall','NDCG']") == ["Recall", "NDCG"]
    assert_not_run(run_dir)


# ------------------------------------------------------------------------------------------------
# checkpoints: load_data_and_model and the analysis helpers rebuild the Config from the checkpoint
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def hostile_checkpoint(run_dir, quiet_config):
    """A real checkpoint of a 1-epoch BPR run whose stored user config holds code in a string value."""
    from recbole_ext.quick_start import run_recbole

    root = write_tiny_dataset(str(run_dir))
    result = run_recbole("BPR", "tiny", config_dict=tiny_config(root, quiet_config, epochs=1), cmd_args=[],
                         write_results=False)
    state = ckpt.load_checkpoint(result["checkpoint"])
    state["external_config"]["wandb_project"] = HOSTILE
    path = str(run_dir / "hostile.pth")
    atomic_torch_save(state, path)
    return path


def test_hostile_checkpoint_config(run_dir, hostile_checkpoint):
    from recbole_ext.quick_start import config_from_checkpoint

    state = ckpt.load_checkpoint(hostile_checkpoint)
    state["external_config"]["embedding_size"] = f"8 if {HOSTILE} else 8"
    config = config_from_checkpoint(state)
    assert config["wandb_project"] == HOSTILE and config["embedding_size"] == f"8 if {HOSTILE} else 8"
    assert_not_run(run_dir)


def test_hostile_checkpoint_load_data_and_model(run_dir, hostile_checkpoint):
    from recbole_ext.quick_start import load_data_and_model

    config, model, *_ = load_data_and_model(hostile_checkpoint)
    assert config["wandb_project"] == HOSTILE and model is not None
    assert_not_run(run_dir)


def test_hostile_checkpoint_evaluate_checkpoint(run_dir, hostile_checkpoint):
    from recbole_ext.analysis import evaluate_checkpoint

    result, trainer, _ = evaluate_checkpoint(hostile_checkpoint)
    assert trainer.config["wandb_project"] == HOSTILE and result
    assert_not_run(run_dir)
