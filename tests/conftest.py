"""Shared fixtures: one thread, quiet logs, and temporary run folders (no writes into the repo)."""

import os

import pytest
import torch

torch.set_num_threads(1)

import recbole_ext  # noqa: E402,F401  (applies compatibility patches before any Config)


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """Run inside a temporary folder: RecBole writes log/, log_tensorboard/ and saved/ relative to cwd."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def quiet_config():
    """Config keys for fast, quiet test runs (checkpoints and results in the temporary folder)."""
    return {
        "show_progress": False,
        "state": "WARNING",
        "checkpoint_dir": "saved",
        "results_dir": os.path.join("saved", "results"),
        "log_wandb": False,
    }
