"""Checkpoints a researcher can trust: the split they were trained on, exact resume, names no other run
shares, files only this run wrote or was given, folders checked before training, no stray temporary
files, Ctrl-C naming the last checkpoint."""

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch
from recbole.trainer import Trainer as RecBoleTrainer

from recbole_ext import checkpoint as ckpt
from recbole_ext import io
from recbole_ext.analysis import evaluate_checkpoint
from recbole_ext.config import Config
from recbole_ext.errors import CheckpointError, ConfigError, RunInterrupted
from recbole_ext.quick_start import build_model_and_trainer, load_data_and_model, run_recbole, setup_run
from recbole_ext.utils import create_dataset, data_preparation, get_model
from tests.helpers import REPO, tiny_config, write_tiny_dataset


def _temps(folder):
    return glob.glob(os.path.join(str(folder), "**", ".tmp-*"), recursive=True)


@pytest.fixture
def trained(run_dir, quiet_config):
    """A BPR checkpoint trained on tiny data (seed 2020, random split)."""
    root = write_tiny_dataset(str(run_dir))
    keys = tiny_config(root, quiet_config, epochs=1)
    result = run_recbole("BPR", "tiny", config_dict=keys, cmd_args=[])
    return {"root": root, "keys": keys, "result": result, "path": result["checkpoint"]}


# ------------------------------------------------------------------------------------------------
# split fingerprint
# ------------------------------------------------------------------------------------------------
def test_checkpoint_records_dataset_and_split(trained):
    meta = torch.load(trained["path"], weights_only=True)["meta"]
    split = meta["split_fingerprint"]
    assert meta["dataset"] == "tiny" and meta["version"] == ckpt.FORMAT_VERSION == 2
    assert split == trained["result"]["config"]["split_fingerprint"]
    assert split["train"]["rows"] + split["valid"]["rows"] + split["test"]["rows"] == 40 * 8
    assert len(split["sha256"]) == 64 and split["valid"]["rows"] > 0


def test_resume_refuses_another_split_and_accepts_the_same(trained, quiet_config):
    other = Config("BPR", "tiny", config_dict=dict(trained["keys"], seed=7, epochs=2))
    _, trainer = setup_run(other)[5:]
    with pytest.raises(CheckpointError, match=r"cannot resume from .*another data split of 'tiny' — train: 240 "
                                              r"rows in the checkpoint, 240 here \(same size, other rows\)"):
        trainer.resume_checkpoint(trained["path"])
    assert trainer.start_epoch == 0  # nothing restored

    same = Config("BPR", "tiny", config_dict=dict(trained["keys"], epochs=2))
    _, trainer = setup_run(same)[5:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "cannot check" warning either
        trainer.resume_checkpoint(trained["path"])
    assert trainer.start_epoch == 1


def test_script_without_init_seed_is_refused_by_post_training(trained):
    """The bug of the issue: data_preparation without init_seed gives another random split; a backbone
    evaluated or fine-tuned on it would see its own training rows. CaliTune and load_pretrained refuse."""
    from recbole_ext.trainer.calitune.trainer import CaliTuneTrainer
    from recbole.utils import init_seed

    keys = dict(trained["keys"], trainer="CaliTune", pretrained_model_file=trained["path"], calitune_candidates=10)
    config = Config("BPR", "tiny", config_dict=keys)
    train_data, _, _ = data_preparation(config, create_dataset(config))  # forgot init_seed(config["seed"], ...)
    model = get_model("BPR")(config, train_data._dataset)
    with pytest.raises(CheckpointError, match=r"cannot start from .*another data split of 'tiny' — .*init_seed"):
        CaliTuneTrainer(config, model)
    with pytest.raises(CheckpointError, match="another data split"):
        ckpt.load_pretrained(model, trained["path"], config)

    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = get_model("BPR")(config, train_data._dataset)
    trainer = CaliTuneTrainer(config, model)  # the backbone's split: accepted, weights loaded
    saved = torch.load(trained["path"], weights_only=True)["state_dict"]
    assert torch.equal(trainer.model.item_embedding.weight.cpu(), saved["item_embedding.weight"])


def test_load_data_and_model_and_evaluation_refuse_changed_data(trained, quiet_config):
    # evaluate_checkpoint (CP evaluation) with settings that change the split
    with pytest.raises(CheckpointError, match="cannot load .*another data split"):
        evaluate_checkpoint(trained["path"], dict(quiet_config, seed=7))
    result, _, _ = evaluate_checkpoint(trained["path"], dict(quiet_config))
    assert result["ndcg@5"] == pytest.approx(trained["result"]["test_result"]["ndcg@5"], abs=1e-4)
    # the data file changed since training (same users and size, other rows)
    write_tiny_dataset(trained["root"], seed=1)
    with pytest.raises(CheckpointError, match=r"another data split of 'tiny' — .*train: 240 rows in the "
                                              r"checkpoint, 240 here \(same size, other rows\)"):
        load_data_and_model(trained["path"])


def test_other_dataset_is_refused_and_old_checkpoints_warn(trained, run_dir):
    saved = ckpt.load_checkpoint(trained["path"])
    config = Config("BPR", "tiny", config_dict=dict(trained["keys"]))
    model = setup_run(config, with_trainer=False).model
    other = run_dir / "other.pth"
    io.atomic_torch_save(dict(saved, meta=dict(saved["meta"], dataset="ml-1m")), str(other))
    with pytest.raises(CheckpointError, match=r"cannot start from .*other.pth: it was trained on dataset 'ml-1m', "
                                              r"this run uses 'tiny'"):
        ckpt.load_pretrained(model, str(other), config)

    old = run_dir / "old.pth"  # format 1: no split, no random-number states
    meta = {k: v for k, v in saved["meta"].items() if k != "split_fingerprint"}
    io.atomic_torch_save(dict({k: v for k, v in saved.items() if k != "rng"}, meta=dict(meta, version=1)), str(old))
    with pytest.warns(UserWarning, match="records no train/valid/test split .*before recbole_ext checkpoint format 2"):
        loaded = load_data_and_model(str(old))
    assert torch.equal(loaded[1].item_embedding.weight.cpu(), saved["state_dict"]["item_embedding.weight"])


# ------------------------------------------------------------------------------------------------
# exact resume
# ------------------------------------------------------------------------------------------------
def _bpr(root, quiet_config, **extra):
    run = setup_run(Config("BPR", "tiny", config_dict=tiny_config(root, quiet_config, eval_step=1, **extra)))
    return run


def test_resumed_run_equals_uninterrupted_run(run_dir, quiet_config):
    root = write_tiny_dataset(str(run_dir))
    straight = _bpr(root, quiet_config, epochs=2)
    straight.trainer.fit(straight.train_data, straight.valid_data, saved=True)

    first = _bpr(root, quiet_config, epochs=1)  # "interrupted" after epoch 1: its checkpoint (always saved)
    first.trainer.fit(first.train_data, first.valid_data, saved=True)
    path = first.trainer.last_checkpoint
    assert torch.load(path, weights_only=True)["epoch"] == 0

    def resumed(checkpoint_path):
        run = _bpr(root, quiet_config, epochs=2)
        run.trainer.resume_checkpoint(checkpoint_path)
        run.trainer.fit(run.train_data, run.valid_data, saved=True)
        return run

    again = resumed(path)
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name
    assert again.trainer.train_loss_dict[1] == straight.trainer.train_loss_dict[1]
    assert again.trainer.best_valid_score == straight.trainer.best_valid_score
    assert again.trainer.best_valid_result == straight.trainer.best_valid_result
    test = straight.trainer.evaluate(straight.test_data, load_best_model=False)
    assert again.trainer.evaluate(again.test_data, load_best_model=False) == test

    # negative control: the same checkpoint without its random-number states does not continue exactly
    raw = torch.load(path, weights_only=True)
    del raw["rng"]
    io.atomic_torch_save(raw, str(run_dir / "no_rng.pth"))
    with pytest.warns(UserWarning, match="holds no random-number states"):
        drifted = resumed(str(run_dir / "no_rng.pth"))
    assert drifted.trainer.train_loss_dict[1] != straight.trainer.train_loss_dict[1]


def test_rng_state_round_trip_is_weights_only():
    import random

    import numpy as np

    generator = torch.Generator().manual_seed(3)
    state = ckpt.rng_state({"loader": generator})
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=generator)))
    buffer = __import__("io").BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    ckpt.restore_rng(torch.load(buffer, weights_only=True), {"loader": generator})
    assert (random.random(), float(np.random.rand()), float(torch.rand(1)),
            float(torch.rand(1, generator=generator))) == expected


# ------------------------------------------------------------------------------------------------
# concurrent runs and files a run may load
# ------------------------------------------------------------------------------------------------
DRIVER = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    import recbole.trainer.trainer as recbole_trainer
    recbole_trainer.get_local_time = lambda: "Jan-01-2030_00-00-00"  # both runs start "in the same second"
    import recbole_ext
    from recbole_ext.quick_start import run_recbole
    from tests.helpers import tiny_config
    keys = tiny_config(sys.argv[1], {"show_progress": False, "state": "WARNING", "checkpoint_dir": "saved",
                                     "results_dir": "saved/results"}, seed=int(sys.argv[2]), epochs=2)
    result = run_recbole("BPR", "tiny", config_dict=keys, cmd_args=[])
    print(json.dumps({"summary": result["summary_path"], "checkpoint": result["checkpoint"]}))
    """
)


def _python(script, cwd, *args):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_started_together_write_and_test_their_own_files(run_dir):
    root = write_tiny_dataset(str(run_dir))
    procs = [_python(DRIVER, run_dir, root, seed) for seed in (1, 2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    runs = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    checkpoints = sorted(glob.glob(str(run_dir / "saved" / "BPR-Jan-01-2030_00-00-00*.pth")))
    assert len(checkpoints) == 2 and {r["checkpoint"] for r in runs} == set(checkpoints)
    assert len({r["summary"] for r in runs}) == 2
    for run, seed in zip(runs, (1, 2)):
        summary = json.load(open(run_dir / run["summary"]))
        saved = ckpt.load_checkpoint(summary["checkpoint"])
        assert summary["checkpoint"] == run["checkpoint"]
        assert saved["config"]["seed"] == summary["config"]["seed"] == seed
        assert saved["best_valid_score"] == pytest.approx(summary["best_valid_score"])
        # the summary's test metrics are those of its own checkpoint
        config, model, _, train_data, _, test_data = load_data_and_model(summary["checkpoint"])
        trainer = build_model_and_trainer(config, train_data)[1]
        trainer.model.load_state_dict(model.state_dict())
        trainer.collect_train_data(train_data)
        test = trainer.evaluate(test_data, load_best_model=False)
        assert {k: float(v) for k, v in test.items()} == pytest.approx(summary["test_result"])
    assert not _temps(run_dir / "saved")


def test_best_model_is_only_loaded_from_a_file_this_run_wrote(run_dir, quiet_config):
    root = write_tiny_dataset(str(run_dir))
    run = _bpr(root, quiet_config, epochs=1)
    # another run's checkpoint lies under the name this trainer chose: it must never be read
    other = run_recbole("BPR", "tiny", config_dict=tiny_config(root, quiet_config, epochs=1), cmd_args=[])
    os.makedirs(os.path.dirname(run.trainer.saved_model_file), exist_ok=True)
    with open(other["checkpoint"], "rb") as src, open(run.trainer.saved_model_file, "wb") as dst:
        dst.write(src.read())
    run.trainer.fit(run.train_data, run.valid_data, saved=False)
    with pytest.raises(CheckpointError, match="this run has saved no checkpoint .*load_best_model=False"):
        run.trainer.evaluate(run.test_data, load_best_model=True)
    # given explicitly: loaded
    assert run.trainer.evaluate(run.test_data, model_file=other["checkpoint"])["ndcg@5"] == pytest.approx(
        other["test_result"]["ndcg@5"], abs=1e-4)
    # written by this run: loaded
    fresh = _bpr(root, quiet_config, epochs=1)
    fresh.trainer.fit(fresh.train_data, fresh.valid_data, saved=True)
    assert fresh.trainer.evaluate(fresh.test_data) == fresh.trainer.evaluate(fresh.test_data, load_best_model=False)


def test_output_names_are_unique_within_and_across_processes(run_dir):
    first = io.unique_path(str(run_dir / "BPR-t.pth"))
    second = io.unique_path(str(run_dir / "BPR-t.pth"))
    assert first == str(run_dir / f"BPR-t-{os.getpid()}.pth") and second == str(run_dir / f"BPR-t-{os.getpid()}-1.pth")
    trajectory = io.unique_path(str(run_dir / "MoRec-x-trajectory.json"), ext="-trajectory.json")
    assert trajectory.endswith(f"MoRec-x-{os.getpid()}-trajectory.json")


# ------------------------------------------------------------------------------------------------
# files: writable folders, stale temporary files, umask
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["checkpoint_dir", "results_dir"])
def test_unwritable_output_folder_is_refused_before_reading_data(run_dir, quiet_config, key):
    (run_dir / "a_file").write_text("not a folder")
    keys = dict(quiet_config, **{key: str(run_dir / "a_file" / "out")})
    # the dataset does not exist either: the folder check comes first, before any data is read
    with pytest.raises(ConfigError, match=f"{key} '.*a_file/out' is not a folder this run can write to .*--{key}="):
        run_recbole("BPR", "nowhere", config_dict=keys, cmd_args=[])
    assert not glob.glob(str(run_dir / "saved" / "*.pth")) and not _temps(run_dir)


KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from recbole_ext.io import atomic_write
    def write(f):
        f.write(b"half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # killed during the save
    atomic_write(sys.argv[1], write)
    """
)


def test_a_kill_during_a_save_leaves_no_stray_file_for_the_next_run(run_dir):
    target = run_dir / "saved" / "BPR.pth"
    proc = _python(KILLED_WRITER, run_dir, target)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    stray = _temps(run_dir / "saved")
    assert len(stray) == 1 and f".tmp-{proc.pid}@" in stray[0] and not target.exists()
    mine = run_dir / "saved" / f".tmp-{os.getpid()}@{io._HOST}.inuse"  # a live writer's file is kept
    foreign = run_dir / "saved" / f".tmp-{proc.pid}@another-host.x1"  # another host's process: not ours to judge
    mine.write_bytes(b"")
    foreign.write_bytes(b"")
    io.atomic_write_text(str(run_dir / "saved" / "next.json"), "{}")
    assert sorted(_temps(run_dir / "saved")) == sorted([str(mine), str(foreign)])
    assert (run_dir / "saved" / "next.json").read_text() == "{}"


def test_output_files_follow_the_umask(run_dir):
    old = os.umask(0o027)
    try:
        io.atomic_write_text(str(run_dir / "x.json"), "{}")
    finally:
        os.umask(old)
    assert os.stat(run_dir / "x.json").st_mode & 0o777 == 0o640


# ------------------------------------------------------------------------------------------------
# Ctrl-C
# ------------------------------------------------------------------------------------------------
def test_ctrl_c_names_the_last_checkpoint_and_resume_continues(run_dir, quiet_config, monkeypatch):
    root = write_tiny_dataset(str(run_dir))
    keys = tiny_config(root, quiet_config, epochs=3, eval_step=1)
    train_epoch = RecBoleTrainer._train_epoch

    def interrupt_in_epoch_2(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 1:
            raise KeyboardInterrupt
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(RecBoleTrainer, "_train_epoch", interrupt_in_epoch_2)
    with pytest.raises(RunInterrupted, match=r"interrupted \(Ctrl-C\); last checkpoint: .*resume with "
                                             r"--resume_checkpoint=") as info:
        run_recbole("BPR", "tiny", config_dict=keys, cmd_args=[])
    path = info.value.checkpoint
    assert os.path.isabs(path) and torch.load(path, weights_only=True)["epoch"] == 0
    assert isinstance(info.value, KeyboardInterrupt) and not _temps(run_dir)
    assert not glob.glob(str(run_dir / "saved" / "results" / "*.json"))  # no summary of a half run
    monkeypatch.setattr(RecBoleTrainer, "_train_epoch", train_epoch)
    resumed = run_recbole("BPR", "tiny", config_dict=dict(keys, resume_checkpoint=path), cmd_args=[])
    assert resumed["checkpoint"] == path


def test_ctrl_c_during_a_save_or_before_training(run_dir, quiet_config, monkeypatch):
    root = write_tiny_dataset(str(run_dir))
    keys = tiny_config(root, quiet_config, epochs=2, eval_step=1)

    def interrupted_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(RunInterrupted, match="before any checkpoint was written") as info:
        run_recbole("BPR", "tiny", config_dict=keys, cmd_args=[])
    assert info.value.checkpoint is None
    assert not _temps(run_dir) and not glob.glob(str(run_dir / "saved" / "*.pth"))
    monkeypatch.undo()

    import recbole_ext.quick_start as quick_start

    def interrupted_loading(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(quick_start, "create_dataset", interrupted_loading)
    with pytest.raises(RunInterrupted, match="nothing to resume"):
        run_recbole("BPR", "tiny", config_dict=keys, cmd_args=[])


SIGINT_DRIVER = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(1)
    import recbole_ext
    from recbole_ext.errors import RunInterrupted
    from recbole_ext.quick_start import run_recbole
    from tests.helpers import tiny_config
    keys = tiny_config(sys.argv[1], {"show_progress": False, "state": "WARNING", "checkpoint_dir": "saved",
                                     "results_dir": "saved/results"}, epochs=100000, eval_step=1, stopping_step=100000)
    try:
        run_recbole("BPR", "tiny", config_dict=keys, cmd_args=[])
    except RunInterrupted as err:
        print("CHECKPOINT", err.checkpoint)
        sys.exit(130)
    """
)


def test_real_sigint_stops_the_run_with_its_checkpoint(run_dir):
    root = write_tiny_dataset(str(run_dir))
    proc = _python(SIGINT_DRIVER, run_dir, root)
    deadline = time.time() + 120
    while not glob.glob(str(run_dir / "saved" / "BPR-*.pth")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    path = out.split("CHECKPOINT ")[1].strip()
    assert path == os.path.abspath(glob.glob(str(run_dir / "saved" / "BPR-*.pth"))[0])
    ckpt.load_checkpoint(path)  # complete, loadable
    assert not _temps(run_dir)
