"""Multi-process (torch.distributed DDP) runs on CPU with Gloo: 2 processes on ml-100k (issue 8).

What is checked, for BPR (RecBole's trainer) and BaM_REMI (recbole_ext's BaM trainer and sampler):
* the processes train one model: after training, every rank's parameters are bit-identical
  (gradients are all-reduced; rank-dependent seeds and negatives would otherwise make them differ);
* evaluation is exact: the 2-process test metrics, set metrics (ItemCoverage, GiniIndex) included,
  equal a single-process evaluation of the checkpoint rank 0 wrote;
* only rank 0 writes files (one summary, one checkpoint, one routing log).
"""

import glob
import json
import os
import subprocess
import sys

import pytest
import torch

import recbole_ext  # noqa: F401
from recbole_ext.config import Config
from recbole_ext.quick_start import launch
from recbole_ext.errors import ConfigError
from recbole_ext.quick_start import load_data_and_model
from recbole_ext.utils import get_trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAM_PROPS = os.path.join(ROOT, "properties", "bam_ml-100k.yaml")
QUIET = {"show_progress": False, "state": "WARNING", "checkpoint_dir": "saved", "results_dir": "saved/results",
         "log_wandb": False}


def _single_process_test_metrics(checkpoint):
    config, model, _, train_data, _, test_data = load_data_and_model(checkpoint)
    assert config["single_spec"] and "local_rank" not in config.external_config_dict
    trainer = get_trainer(config["MODEL_TYPE"], config["model"], config)(config, model)
    trainer.collect_train_data(train_data)
    return dict(trainer.evaluate(test_data, load_best_model=True, model_file=checkpoint))


def _check_two_process_run(results, tmp_path, checkpoints="*.pth"):
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["world_size"] == 2 and r["dist_backend"] == "gloo" for r in results)
    assert results[0]["model_digest"] == results[1]["model_digest"], "DDP did not keep the replicas equal"
    assert results[0]["test_result"] == results[1]["test_result"]
    summaries = [p for p in glob.glob(str(tmp_path / "saved" / "results" / "*.json")) if "-trajectory" not in p]
    assert summaries == [os.path.abspath(results[0]["summary_path"])] and "summary_path" not in results[1]
    summary = json.load(open(summaries[0]))
    assert summary["config"]["single_spec"] is False and summary["config"]["world_size"] == 2
    written = glob.glob(str(tmp_path / "saved" / checkpoints))
    assert os.path.abspath(results[0]["checkpoint"]) in written
    if checkpoints == "*.pth":  # RecBole's trainer: one checkpoint, rank 0's
        assert len(written) == 1
    single = _single_process_test_metrics(results[0]["checkpoint"])
    assert set(single) == set(results[0]["test_result"])
    for name, value in single.items():
        assert results[0]["test_result"][name] == pytest.approx(float(value), abs=1.5e-4), name
    return summary


def test_bpr_two_process_gloo_matches_single_process_evaluation(run_dir):
    config = {**QUIET, "epochs": 1, "metrics": ["Recall", "NDCG", "ItemCoverage", "GiniIndex"], "topk": [10],
              "valid_metric": "NDCG@10"}
    results = launch("BPR", "ml-100k", nproc=2, config_dict=config)
    _check_two_process_run(results, run_dir)
    test = results[0]["test_result"]
    assert test["ndcg@10"] > 0 and 0 < test["itemcoverage@10"] <= 1


def test_bam_remi_two_process_gloo(run_dir):
    config = {**QUIET, "epochs": 1, "MAX_ITEM_LIST_LENGTH": 10, "train_batch_size": 256, "sampled_n": 128,
              "learning_rate": 0.003, "iters_per_epoch": 30, "routing_plot": True}
    results = launch("BaM_REMI", "ml-100k", nproc=2, config_dict=config, config_file_list=[BAM_PROPS])
    _check_two_process_run(results, run_dir)
    routing = glob.glob(str(run_dir / "saved" / "*-routing.json"))
    assert len(routing) == 1
    history = json.load(open(routing[0]))["epochs"]
    assert len(history) == 1 and sum(history[0]["selected"]) == pytest.approx(1.0, abs=1e-6)


def test_calitune_two_process_gloo(run_dir):
    """CaliTune's own per-user loop: users sharded, gradients averaged, snapshots by rank 0 only;
    the course metrics (JSD, UserGroup: ExtCollector keys rec.users / side information) gathered."""
    from recbole_ext.quick_start import run_recbole

    base = {**QUIET, "embedding_size": 32, "learning_rate": 5e-3, "epochs": 3, "eval_step": 3,
            "metrics": ["NDCG", "JSD", "UserGroup"]}
    backbone_yaml = os.path.join(ROOT, "properties", "calitune_backbone_bpr_ml-100k.yaml")
    backbone = run_recbole("BPR", "ml-100k", [backbone_yaml], {**base, "checkpoint_dir": "backbone", "results_dir": "backbone"})
    config = {**base, "trainer": "CaliTune", "pretrained_model_file": backbone["checkpoint"], "epochs": 2,
              "calitune_lambda": 0.5, "learning_rate": 1e-3, "calitune_batch_size": 64, "calitune_candidates": 100}
    files = [backbone_yaml, os.path.join(ROOT, "properties", "calitune_ml-100k.yaml")]
    results = launch("BPR", "ml-100k", nproc=2, config_dict=config, config_file_list=files)
    _check_two_process_run(results, run_dir, checkpoints="BPR-CaliTune-*/*.pth")
    snapshot_dirs = glob.glob(str(run_dir / "saved" / "BPR-CaliTune-*"))  # rank 0's snapshots only
    assert len(snapshot_dirs) == 1
    assert {os.path.basename(p) for p in glob.glob(os.path.join(snapshot_dirs[0], "*.pth"))} <= {"epoch_1.pth", "epoch_2.pth"}
    test = results[0]["test_result"]
    assert 0 < test["ndcg@10"] and 0 < test["jsd@10"] < 1


def test_morec_two_process_gloo(run_dir):
    """MoRec's own loop: the same sampler batches in every process, each takes every other row of each
    sub-batch, sub-batch losses summed across processes (the PI coordinator sees the global accuracy
    loss), gradients summed; validation signals from all users; trajectory written by rank 0 only."""
    from recbole_ext.data import morec_data
    from recbole_ext.quick_start import run_recbole

    morec_data.prepare_ml100k("dataset")
    yaml_file = os.path.join(ROOT, "properties", "morec_ml-100k.yaml")
    fast = {**QUIET, "train_batch_size": 2048, "eval_batch_size": 8192}
    pre = run_recbole("BPR", "ml-100k-morec", [yaml_file],
                      {**fast, "epochs": 3, "eval_step": 3, "checkpoint_dir": "pre", "results_dir": "pre"})
    config = {**fast, "trainer": "MoRec", "epochs": 2, "pretrained_model_file": pre["checkpoint"]}
    results = launch("BPR", "ml-100k-morec", nproc=2, config_dict=config, config_file_list=[yaml_file])
    _check_two_process_run(results, run_dir)
    trajectories = glob.glob(str(run_dir / "saved" / "results" / "*-trajectory.json"))
    assert len(trajectories) == 1
    epochs = json.load(open(trajectories[0]))["epochs"]
    assert [e["epoch"] for e in epochs] == [-1, 0, 1] and all(e["beta_mean"] > 0 for e in epochs[1:])


def test_run_recbole_script_nproc_2(run_dir):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "run_recbole.py"), "--model=Pop", "--dataset=ml-100k", "--nproc=2",
         "--epochs=1", "--show_progress=False", "--state=WARNING", "--results_dir=saved/results"],
        cwd=run_dir, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 processes (gloo)" in proc.stdout
    assert proc.stdout.count("summary written to") == 1
    assert len(glob.glob(str(run_dir / "saved" / "results" / "*.json"))) == 1


def test_dist_backend_is_checked(monkeypatch):
    launch_keys = {"local_rank": 0, "world_size": 1, "nproc": 1, "ip": "127.0.0.1", "port": "1", "offset": 0}
    with pytest.raises(ConfigError, match="dist_backend must be"):
        Config("Pop", "ml-100k", config_dict={**launch_keys, "dist_backend": "mpi"})
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="needs CUDA"):
            Config("Pop", "ml-100k", config_dict={**launch_keys, "dist_backend": "nccl"})
    with pytest.raises(ConfigError, match="do not fit"):
        sys.path.insert(0, ROOT)
        import run_recbole

        args, _ = run_recbole.parse_args(["--model=Pop", "--nproc=2", "--world_size=2", "--group_offset=1"])
        run_recbole.run_distributed(args, None, [])


def test_trainers_without_ddp_support_refuse_multi_process():
    from recbole_ext.trainer.trainer import Trainer

    class NotYet(Trainer):
        supports_distributed = False

    with pytest.raises(ConfigError, match="NotYet does not support multi-process"):
        NotYet({"single_spec": False}, torch.nn.Linear(1, 1))


def test_ddp_on_cpu_and_ensure_dir(tmp_path):
    """The trainer base's DDP (formerly compat C12): RecBole's AbstractTrainer builds DDP with
    device_ids=[local_rank], which DDP rejects for a CPU module; C13: RecBole's ensure_dir races when
    several processes create the same folder."""
    import torch.distributed as dist
    from recbole.utils import logger as recbole_logger
    from torch.nn.parallel import DistributedDataParallel

    from recbole_ext.distributed import free_port, wrap_ddp

    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{free_port()}")
    try:
        model = torch.nn.Linear(3, 1)
        _, distributed_model = wrap_ddp(model, {"single_spec": False, "device": torch.device("cpu"), "local_rank": 0})
        trainer = type("T", (), {"distributed_model": distributed_model})
        assert isinstance(trainer.distributed_model, DistributedDataParallel)
        assert trainer.distributed_model.device_ids is None
    finally:
        dist.destroy_process_group()
    recbole_logger.ensure_dir(str(tmp_path / "a" / "b"))
    recbole_logger.ensure_dir(str(tmp_path / "a" / "b"))  # exists already: no FileExistsError
    assert (tmp_path / "a" / "b").is_dir()
