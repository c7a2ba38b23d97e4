"""MoRec end to end on ml-100k (prepared with synthetic prices): pretrain BPR with the normal trainer
through run_recbole.py, post-train with ``--trainer=MoRec``, check pop-kl drops; bad input errors."""

import glob
import importlib.util
import json
import math
import os
import types

import numpy as np
import pytest
import torch
import yaml
from recbole.data.interaction import Interaction

from recbole_ext.config import Config
from recbole_ext.data import morec_data
from recbole_ext.errors import CheckpointError, ConfigError, DatasetError
from recbole_ext.options import PROPERTIES_DIR
from recbole_ext.quick_start import build_model_and_trainer
from recbole_ext.trainer.morec import MoRecTrainer
from recbole_ext.utils import create_dataset, data_preparation
from tests.helpers import REPO as ROOT

YAML = os.path.join(ROOT, "properties", "morec_ml-100k.yaml")
QUIET = ["--show_progress=False", "--state=WARNING", "--log_wandb=False", "--checkpoint_dir=saved",
         "--results_dir=saved/results", "--config_files=" + YAML]
FAST = ["--train_batch_size=2048", "--eval_batch_size=8192"]
# the package defaults of the data helpers' keys, for calls with a plain dict
OVERALL = yaml.safe_load(open(os.path.join(PROPERTIES_DIR, "overall.yaml"), encoding="utf-8"))


def _cli():
    spec = importlib.util.spec_from_file_location("run_recbole_cli", os.path.join(ROOT, "run_recbole.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _latest(pattern):
    return max(glob.glob(pattern), key=os.path.getmtime)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("morec")
    old = os.getcwd()
    os.chdir(path)
    morec_data.prepare_ml100k("dataset")
    main = _cli()
    # pretrain with RecBole's normal trainer
    assert main(["--model=BPR", "--dataset=ml-100k-morec", "--epochs=5",
                 "--eval_step=5"] + QUIET + FAST) == 0
    pre = json.load(open(_latest("saved/results/BPR-*.json")))
    yield types.SimpleNamespace(path=path, main=main, pretrained=pre, ckpt=pre["checkpoint"])
    os.chdir(old)


def test_morec_pid_lowers_popkl_via_cli(workdir):
    before = set(glob.glob("saved/results/*.json"))
    assert workdir.main(["--model=BPR", "--dataset=ml-100k-morec", "--trainer=MoRec", "--epochs=2",
                         f"--pretrained_model_file={workdir.ckpt}"] + QUIET + FAST) == 0
    new = [p for p in set(glob.glob("saved/results/*.json")) - before if "trajectory" not in p]
    result = json.load(open(new[0]))
    pre = workdir.pretrained["test_result"]
    assert result["config"]["trainer"] == "MoRec"
    assert result["test_result"]["popkl@10"] < pre["popkl@10"]
    # accuracy kept within reason, and well above a random ranking (10 / ~1000 items)
    assert result["test_result"]["hit@10"] > 0.5 * pre["hit@10"] > 0.05
    trajectory = json.load(open(_latest("saved/results/MoRec-BPR-*-trajectory.json")))
    epochs = trajectory["epochs"]
    assert [e["epoch"] for e in epochs] == [-1, 0, 1]
    assert epochs[0]["valid"]["popkl@10"] == pytest.approx(workdir.pretrained["best_valid_result"]["popkl@10"])
    for e in epochs:
        for o, w in e["sampling_weights"].items():
            assert sum(w) == pytest.approx(1.0, abs=1e-6) and w[0] == 0
    # revenue weights never move (up to the 1e-10 of each renormalisation); alignment weights do
    assert epochs[2]["sampling_weights"]["revenue"] == pytest.approx(epochs[0]["sampling_weights"]["revenue"], rel=1e-8)
    assert epochs[2]["sampling_weights"]["alignment"] != epochs[0]["sampling_weights"]["alignment"]
    assert 0.6 <= epochs[1]["beta_mean"] <= 1.3
    assert os.path.getsize(_latest("saved/results/MoRec-BPR-*-trajectory.png")) > 1000


@pytest.fixture(scope="module")
def built(workdir):
    config = Config("BPR", "ml-100k-morec", [YAML], {"show_progress": False, "state": "WARNING",
                                                     "train_batch_size": 2048})
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model, _ = build_model_and_trainer(config, train)
    return types.SimpleNamespace(config=config, dataset=dataset, train=train, valid=valid, model=model)


def _config(workdir, **extra):
    base = {"show_progress": False, "state": "WARNING", "trainer": "MoRec",
            "pretrained_model_file": workdir.ckpt, "train_batch_size": 2048}
    base.update(extra)
    return Config("BPR", "ml-100k-morec", [YAML], base)


@pytest.mark.parametrize(
    "extra,error,match",
    [
        ({"morec_objective_weights": "[0.5,0.5]"}, ConfigError, "has 2 entries but needs 3"),
        ({"morec_objective_controller": "Static"}, ConfigError, "accuracy weight"),
        ({"morec_objectives": ["fairness", "diversity"]}, ConfigError, "unknown or repeated"),
        ({"morec_objective_controller": "PD"}, ConfigError, "PID' or 'Static"),
        ({"morec_ngroup": [10, 10, -1]}, ConfigError, "M7"),
        ({"morec_ngroup": -1}, ConfigError, "M12"),
        ({"pretrained_model_file": None}, CheckpointError, "no pretrained checkpoint"),
    ],
)
def test_bad_config(workdir, built, extra, error, match):
    with pytest.raises(error, match=match):
        MoRecTrainer(_config(workdir, **extra), built.model)


def test_missing_item_field_and_bad_distributions(workdir, built):
    trainer = MoRecTrainer(_config(workdir, morec_fair_field="category"), built.model)
    with pytest.raises(DatasetError, match="no such column"):
        trainer._setup(built.train, built.valid)
    ds = built.train._dataset
    with pytest.raises(DatasetError, match="sum to 1"):
        morec_data.expected_align_distribution(ds, {**OVERALL, "morec_align_dist": [0.2] * 10})
    with pytest.raises(DatasetError, match="one proportion for each alignment group 1..10"):
        morec_data.expected_align_distribution(ds, {**OVERALL, "morec_align_dist": [0.25] * 4})
    path = os.path.join(workdir.path, "dist0.csv")
    with open(path, "w") as f:
        f.write("group_id,proportion\n" + "".join(f"{g},0.1\n" for g in range(10)))
    with pytest.raises(DatasetError, match="0-based ids"):
        morec_data.expected_align_distribution(ds, {**OVERALL, "morec_align_dist": path})
    zero_based = {**OVERALL, "morec_align_dist": path, "morec_align_dist_zero_based": True}
    dist = morec_data.expected_align_distribution(ds, zero_based)
    assert dist.tolist() == pytest.approx([0] + [0.1] * 10)
    # default: training interaction share of each popularity bin, most popular bin largest
    default = morec_data.expected_align_distribution(ds, OVERALL)
    assert default.sum() == pytest.approx(1.0) and default[0] == 0 and int(default.argmax()) == 1


def test_group_without_items_is_an_error():
    item_feat = Interaction({"item_id": torch.arange(4), "fair_group": torch.tensor([0.0, 1, 3, 3])})
    fake = types.SimpleNamespace(item_feat=item_feat, dataset_name="fake", iid_field="item_id")
    with pytest.raises(DatasetError, match=r"groups \[2\] have no items"):
        morec_data.item_groups(fake, OVERALL, "fair")
    item_feat = Interaction({"item_id": torch.arange(3), "fair_group": torch.tensor([0.0, 1, 0])})
    fake = types.SimpleNamespace(item_feat=item_feat, dataset_name="fake", iid_field="item_id",
                                 id2token=lambda field, ids: np.asarray(ids).astype(str))
    with pytest.raises(DatasetError, match="no 'fair_group' group"):
        morec_data.item_groups(fake, OVERALL, "fair")


SASREC = ["--model=SASRec", "--train_neg_sample_args=None", "--loss_type=CE", "--hidden_size=16", "--inner_size=32",
          "--n_layers=1", "--n_heads=1", "--MAX_ITEM_LIST_LENGTH=10", "--train_batch_size=1024"]


def _sasrec_flow(main, dataset, pre_epochs, morec_epochs):
    assert main(SASREC + [f"--dataset={dataset}", f"--epochs={pre_epochs}", "--learning_rate=0.005"] + QUIET) == 0
    pre = json.load(open(_latest("saved/results/SASRec-*.json")))
    assert main(SASREC + [f"--dataset={dataset}", f"--epochs={morec_epochs}", "--trainer=MoRec",
                          f"--pretrained_model_file={pre['checkpoint']}", "--morec_expect_loss=5.0",
                          "--learning_rate=0.001"] + QUIET) == 0
    post = json.load(open(_latest("saved/results/SASRec-*.json")))
    trajectory = json.load(open(_latest("saved/results/MoRec-SASRec-*-trajectory.json")))
    return pre, post, trajectory


def test_sequential_sasrec_through_morec(workdir):
    """Same flow for a sequential model (SASRec, per-row CE loss through full_sort_predict), small data."""
    morec_data.prepare_ml100k("dataset", dataset_name="ml-100k-morec-small", max_users=120)
    pre, post, trajectory = _sasrec_flow(workdir.main, "ml-100k-morec-small", 1, 1)
    assert post["config"]["trainer"] == "MoRec" and post["checkpoint"] != pre["checkpoint"]
    assert np.isfinite(post["test_result"]["popkl@10"]) and post["test_result"]["hit@10"] >= 0
    assert [e["epoch"] for e in trajectory["epochs"]] == [-1, 0]
    assert trajectory["epochs"][1]["objective_losses"]["accuracy"] > 0
    # the PI controller saw an accuracy loss above L* = 5 -> beta above its minimum
    assert trajectory["epochs"][1]["beta_mean"] > 0.6


@pytest.mark.slow
def test_sequential_sasrec_full_ml100k_lowers_popkl(workdir):
    pre, post, _ = _sasrec_flow(workdir.main, "ml-100k-morec", 3, 2)
    assert post["test_result"]["popkl@10"] < pre["test_result"]["popkl@10"]


def test_trainer_internals_negatives_and_fairness_norm(workdir, built):
    trainer = MoRecTrainer(_config(workdir, morec_neg_num=3), built.model)
    trainer._setup(built.train, built.valid)
    users = trainer.train_inter[trainer.uid][:500]
    items = trainer.train_inter[trainer.iid][:500]
    negs = trainer._sample_negatives(users, items, 3)
    keys = users.long().unsqueeze(1) * trainer.n_items + negs
    assert not torch.isin(keys[negs > 0], trainer.history_keys).any()
    assert (negs != items.unsqueeze(1)).all()
    # M1: group score = sum of the group's losses / |V|; option 'group' divides by |V_g|
    trainer.generator.manual_seed(0)
    total = trainer._fairness_losses()
    trainer.options.fair_norm = "group"
    trainer.generator.manual_seed(0)
    group = trainer._fairness_losses()
    groups = trainer.item2group["fairness"][trainer.valid_inter[trainer.iid].long()]
    counts = torch.bincount(groups, minlength=len(total)).numpy()
    ok = counts > 0
    ok[0] = False
    assert np.allclose(total[ok] * len(trainer.valid_inter) / counts[ok], group[ok])
    assert np.isneginf(total[0]) and np.isneginf(total[~ok]).all()


# ----------------------------------------------------------------------------------------- issue 14
def _test_popkl(workdir, eval_batch_size, aggregate):
    """pop-kl@10 of the pretrained BPR on the test split, evaluated through RecBole's pipeline with RecBole's
    batching (eval_block_mb 0: eval_batch_size // n_items users per full-sort batch)."""
    config = Config("BPR", "ml-100k-morec", [YAML], {"show_progress": False, "state": "WARNING",
                                                     "eval_batch_size": eval_batch_size, "eval_block_mb": 0,
                                                     "morec_popkl_aggregate": aggregate})
    train, _, test = data_preparation(config, create_dataset(config))
    _, trainer = build_model_and_trainer(config, train)
    trainer.collect_train_data(train)
    result = trainer.evaluate(test, model_file=workdir.ckpt)
    return result["popkl@10"], test


def test_popkl_does_not_depend_on_eval_batch_size(workdir, built):
    """Default pop-kl (blocks of 100 users) is the same at 4 and 64 users per full-sort batch and equals the
    per-batch mean when RecBole's batches hold exactly 100 users (UniRec's test_batch_size) — UniRec's value on
    these lists; the per-batch mean ('batch', the old default) moves with eval_batch_size."""
    n_items = built.dataset.item_num
    block = {users: _test_popkl(workdir, users * n_items, "block")[0] for users in (4, 64)}
    batch = {}
    for users in (4, 64, 100):
        batch[users], test = _test_popkl(workdir, users * n_items, "batch")
        assert test.step == users  # users per full-sort batch
    assert block[4] == block[64] == pytest.approx(batch[100], abs=1e-12)
    assert batch[4] != batch[64]


def test_align_target_counts_train_and_valid(workdir, built):
    """Default p* = share of each alignment group in the train + valid histories (UniRec's user_history), i.e.
    all interactions but the test split's; 'train' counts the training split only."""
    ds, iid, uid = built.dataset, built.dataset.iid_field, built.dataset.uid_field
    n_items = ds.item_num
    groups = morec_data.item_groups(ds, OVERALL, "align").numpy()

    def share(inter, minus=None):
        keys = set((inter[uid].numpy().astype(np.int64) * n_items + inter[iid].numpy()).tolist())
        if minus is not None:
            keys -= set((minus[uid].numpy().astype(np.int64) * n_items + minus[iid].numpy()).tolist())
        counts = np.bincount(np.asarray(sorted(keys)) % n_items, minlength=n_items)
        dist = np.bincount(groups, weights=counts, minlength=groups.max() + 1)
        dist[0] = 0
        return dist / dist.sum()

    train_ds = built.train._dataset
    assert train_ds.split_valid_inter is built.valid._dataset.inter_feat  # linked by data_preparation
    _, _, test = data_preparation(built.config, create_dataset(built.config))
    by_hand = share(ds.inter_feat, minus=test._dataset.inter_feat)
    default = morec_data.expected_align_distribution(train_ds, built.config).numpy()
    assert default == pytest.approx(by_hand, abs=1e-12)
    train_only = morec_data.expected_align_distribution(train_ds, {**OVERALL, "morec_align_counts": "train"}).numpy()
    assert train_only == pytest.approx(share(train_ds.inter_feat), abs=1e-12)
    assert np.abs(default - train_only).max() > 1e-4
    # the metric input and the trainer's alignment target are the same p*
    from recbole_ext.evaluator.collector import DATA_PROVIDERS

    assert DATA_PROVIDERS["morec.align_expected"](train_ds, built.config).numpy() == pytest.approx(default, abs=0)
    trainer = MoRecTrainer(_config(workdir), built.model)
    trainer._setup(built.train, built.valid)
    assert trainer.p_star == pytest.approx(default, abs=0)
    # training data whose validation split is unknown: an error, not a train-only p* in disguise
    orphan = train_ds.copy(train_ds.inter_feat)
    del orphan.split_valid_inter
    with pytest.raises(ConfigError, match="validation split of this training data is unknown"):
        morec_data.expected_align_distribution(orphan, built.config)


@pytest.mark.parametrize("early_stop,epochs_run", [(False, 2), (True, 1)])
def test_early_stop_off_by_default(workdir, built, early_stop, epochs_run):
    """UniRec's MoRec runs every epoch (early_stop -1): with no validation improving on the best score and
    stopping_step 0, the default still runs all epochs; morec_early_stop: true stops after the first."""
    trainer = MoRecTrainer(_config(workdir, epochs=2, stopping_step=0, morec_early_stop=early_stop), built.model)
    trainer.best_valid_score = math.inf  # no validation improves: RecBole's early stopping would fire at once
    trainer.fit(built.train, built.valid, saved=False)
    assert [e["epoch"] for e in trainer.morec_history] == [-1] + list(range(epochs_run))
    # morec_select: last -> the reported result is that of the model after the last epoch run
    assert trainer.best_valid_result == trainer.morec_history[-1]["valid"]
