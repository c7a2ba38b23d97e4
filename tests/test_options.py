"""One home for defaults: every option our code reads has its default in a YAML file (RecBole's or ours)."""

import ast
import glob
import os

import recbole
import yaml

from recbole_ext import options

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recbole_ext")
# set by RecBole's Config itself (model/dataset resolution, device, input types), not user options
CONFIG_DERIVED = {"model", "dataset", "MODEL_TYPE", "MODEL_INPUT_TYPE", "device", "single_spec", "local_rank",
                  "encoding", "eval_type", "valid_metric_bigger", "train_neg_sample_args"}


def yaml_keys():
    files = glob.glob(os.path.join(os.path.dirname(recbole.__file__), "properties", "**", "*.yaml"), recursive=True)
    files += glob.glob(os.path.join(options.PROPERTIES_DIR, "**", "*.yaml"), recursive=True)
    keys = set()
    for path in files:
        with open(path, encoding="utf-8") as f:
            content = yaml.safe_load(f) or {}
        keys.update(content if isinstance(content, dict) else {})
    return keys


def _is_config(node):
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return name == "config"


def option_reads():
    """``{key: [files]}`` for every ``config["key"]`` read and every key checked by ``options.check_choices``."""
    reads = {}
    for path in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True):
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            keys = []
            if isinstance(node, ast.Subscript) and _is_config(node.value) and isinstance(node.slice, ast.Constant):
                keys = [node.slice.value]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "check_choices":
                if len(node.args) > 1 and isinstance(node.args[1], ast.Dict):
                    keys = [k.value for k in node.args[1].keys if isinstance(k, ast.Constant)]
            for key in keys:
                if isinstance(key, str):
                    reads.setdefault(key, []).append(os.path.relpath(path, PACKAGE))
    return reads


def test_every_option_read_has_a_yaml_default():
    reads = option_reads()
    assert len(reads) > 80 and "morec_alpha" in reads and "cp_lambda" in reads
    missing = {k: v for k, v in reads.items() if k not in yaml_keys() | CONFIG_DERIVED}
    assert missing == {}, f"options read by the code without a YAML default: {missing}"


def test_defaults_files_layer_model_family_alias_trainer_and_reranker():
    from recbole_ext.registry import get_model

    names = [os.path.relpath(p, options.PROPERTIES_DIR) for p in
             options.defaults_files("BaM_REMI", get_model("BaM_REMI"), None, "cp")]
    assert names == ["overall.yaml", "model/MultiInterest.yaml", "model/ComiRec.yaml", "model/REMI.yaml",
                     "model/BaM_REMI.yaml", "trainer/BaM.yaml", "rerank/cp.yaml"]


def test_check_choices_lowers_and_names_the_option():
    import pytest

    from recbole_ext.errors import ConfigError

    assert options.check_choices({"mode": "Sum"}, {"mode": ("sum", "mean")}, "cp") == {"mode": "sum"}
    with pytest.raises(ConfigError, match=r"cp: mode must be one of \['sum', 'mean'\], got 'max'"):
        options.check_choices({"mode": "max"}, {"mode": ("sum", "mean")}, "cp")
    with pytest.raises(ConfigError, match="option 'mode' is not set"):
        options.check_choices({}, {"mode": ("sum", "mean")}, "cp")
