"""TwoTower: both tower types end to end on ml-100k, bad input, full-sort scores equal pairwise scores."""

import os

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_ext.config import Config
from recbole_ext.errors import ConfigError
from recbole_ext.model.general_recommender.twotower import TwoTower
from recbole_ext.utils import create_dataset
from tests.helpers import REPO as ROOT, run_cli
from tests.model.test_gfcf import pop_result, write_tiny  # noqa: F401 (pop_result is a fixture)



@pytest.mark.parametrize("tower_type", ["concat", "product"])
def test_twotower_ml100k_beats_pop(run_dir, pop_result, tower_type):
    """Both tower types through run_recbole.py (the worked-example config), 2 epochs."""
    out = run_cli(
        [
            "--model=TwoTower",
            "--dataset=ml-100k",
            f"--config_files={os.path.join(ROOT, 'properties', 'twotower_ml-100k.yaml')}",
            f"--tower_type={tower_type}",
            "--epochs=2",
            "--metrics=['Recall','NDCG']",
            "--state=WARNING",
            "--show_progress=False",
        ]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    test = {line.split()[0]: float(line.split()[-1]) for line in out.stdout.splitlines() if "@10" in line}
    assert test["recall@10"] > pop_result["recall@10"]
    assert test["ndcg@10"] > pop_result["ndcg@10"]


def test_twotower_bad_type(run_dir, quiet_config):
    write_tiny(str(run_dir))
    cfg = dict(quiet_config, data_path=str(run_dir), tower_type="sum", metrics=["Recall"], valid_metric="Recall@10")
    config = Config(model="TwoTower", dataset="tiny", config_dict=cfg)
    with pytest.raises(ConfigError, match="tower_type 'sum' is unknown"):
        TwoTower(config, create_dataset(config))


def test_twotower_full_sort_matches_predict(run_dir, quiet_config):
    """full_sort_predict (vectorised over items) agrees with pairwise predict."""
    write_tiny(str(run_dir))
    for tower_type in ("concat", "product"):
        cfg = dict(quiet_config, data_path=str(run_dir), tower_type=tower_type, metrics=["Recall"], valid_metric="Recall@10")
        config = Config(model="TwoTower", dataset="tiny", config_dict=cfg)
        dataset = create_dataset(config)
        model = TwoTower(config, dataset).eval()
        users = torch.tensor([1, 2, 3])
        full = model.full_sort_predict(Interaction({"user_id": users})).view(3, -1)
        items = torch.arange(model.n_items)
        pairs = Interaction({"user_id": users.repeat_interleave(model.n_items), "item_id": items.repeat(3)})
        with torch.no_grad():
            torch.testing.assert_close(full, model.predict(pairs).view(3, -1))
