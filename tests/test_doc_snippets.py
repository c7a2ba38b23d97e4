"""The Python snippet of docs/calitune.md ("From a script") runs as written — with 1 epoch and the test's own
backbone checkpoint — and evaluates on the backbone's split (issue 16: an earlier version built the data before
seeding and silently evaluated on another split)."""

import os
import re

import pandas as pd

from recbole_ext.quick_start import run_recbole
from tests.helpers import REPO


def _snippet(doc, after):
    text = open(os.path.join(REPO, "docs", doc), encoding="utf-8").read()
    return re.search(r"```python\n(.*?)```", text[text.index(after):], re.S).group(1)


def test_calitune_script_snippet_runs_on_the_backbone_split(run_dir, quiet_config):
    backbone = run_recbole("BPR", "ml-100k", config_file_list=[os.path.join(REPO, "properties",
                                                                            "calitune_backbone_bpr_ml-100k.yaml")],
                           config_dict=dict(quiet_config, epochs=1))
    code = _snippet("calitune.md", "From a script")
    code = code.replace("saved/BPR-<time>-<pid>.pth", backbone["checkpoint"])
    code = code.replace('"calitune_lambda": 0.5}', '"calitune_lambda": 0.5, "epochs": 1, "show_progress": False, '
                                                   '"state": "WARNING", "checkpoint_dir": "saved"}')
    code = code.replace('"properties/', f'"{REPO}/properties/')
    assert "<time>" not in code and '"epochs": 1' in code
    scope = {}
    exec(compile(code, "docs/calitune.md", "exec"), scope)  # noqa: S102  (the documented snippet itself)
    # the backbone evaluated by the snippet equals the backbone's own test result: same split, same weights
    assert abs(scope["result"]["ndcg@10"] - backbone["test_result"]["ndcg@10"]) < 1e-4
    table = pd.read_csv("per_user.tsv.zip", sep="\t")
    assert set(table["model"]) == {"base_model", "postprocessed_0.5"} and len(table) == 2 * 943
    assert ((scope["overlap"] >= 0) & (scope["overlap"] <= 1)).all()
