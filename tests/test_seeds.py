"""Multi-seed runs (recbole_ext.seeds): summary statistics against the runs' own values, the process pool
against the sequence, seed parsing, and run_recbole.py's --seeds flags and refusals."""

import json
import os
import sys

import numpy as np
import pytest
from scipy import stats as sps

from recbole_ext.errors import ConfigError, MissingPackageError
from recbole_ext.seeds import format_seeds_table, parse_seeds, run_seeds, threads_per_worker
from tests.helpers import REPO

QUICK = {"epochs": 1, "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "eval_step": 1}


def _quiet(base):
    return {"show_progress": False, "state": "WARNING", "log_wandb": False,
            "checkpoint_dir": str(base / "saved"), "results_dir": str(base / "saved" / "results")}


@pytest.fixture(scope="module")
def in_sequence(tmp_path_factory):
    base = tmp_path_factory.mktemp("seeds")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        summary = run_seeds("BPR", "ml-100k", [2020, 2021], config_dict=dict(QUICK, **_quiet(base)))
    return base, summary


def test_summary_mean_and_interval_are_the_runs_own(in_sequence):
    base, summary = in_sequence
    assert summary["seeds"] == [2020, 2021] and [r["seed"] for r in summary["runs"]] == [2020, 2021]
    on_disk = json.load(open(summary["path"]))
    assert os.path.basename(summary["path"]).startswith("BPR-ml-100k-seeds-")
    assert os.path.dirname(summary["path"]) == str(base / "saved" / "results")
    assert on_disk["test"] == summary["test"]
    for run in summary["runs"]:
        per_run = json.load(open(run["summary_path"]))  # each seed's own run_recbole summary
        assert per_run["config"]["seed"] == run["seed"] and per_run["test_result"] == run["test_result"]
    # the seeds vary the split: the two runs' test values differ
    assert summary["runs"][0]["test_result"] != summary["runs"][1]["test_result"]
    for metric in ("recall@10", "ndcg@10"):
        a, b = (r["test_result"][metric] for r in summary["runs"])
        s = summary["test"][metric]
        assert s["n"] == 2
        assert s["mean"] == pytest.approx((a + b) / 2, abs=1e-12)
        sd = abs(a - b) / np.sqrt(2)  # sample sd of two values
        assert s["sd"] == pytest.approx(sd, rel=1e-9)
        half = sps.t.ppf(0.975, 1) * sd / np.sqrt(2)  # t(0.975, 1 df) = 12.706
        assert (s["ci_lo"], s["ci_hi"]) == pytest.approx(((a + b) / 2 - half, (a + b) / 2 + half), rel=1e-9)
    valid = summary["test"]["ndcg@10"]
    table = format_seeds_table(summary)
    assert "metric" in table and "95% CI" in table and f"{valid['mean']:.4f}" in table


def test_processes_give_the_sequence_values(tmp_path, monkeypatch):
    # Pop keeps the two spawned processes cheap (each imports torch and RecBole); the seed still draws the split
    monkeypatch.chdir(tmp_path)
    sequence = run_seeds("Pop", "ml-100k", [2020, 2021], config_dict=dict(QUICK, **_quiet(tmp_path)))
    pooled = run_seeds("Pop", "ml-100k", [2020, 2021], config_dict=dict(QUICK, **_quiet(tmp_path)),
                       parallel="processes", workers=2)
    assert sequence["runs"][0]["test_result"] != sequence["runs"][1]["test_result"]
    assert pooled["parallel"] == "processes" and pooled["workers"] == 2
    assert [r["test_result"] for r in pooled["runs"]] == [r["test_result"] for r in sequence["runs"]]
    assert [r["best_valid_result"] for r in pooled["runs"]] == [r["best_valid_result"] for r in sequence["runs"]]
    assert pooled["test"] == sequence["test"]


def test_parse_seeds_and_bad_input(tmp_path):
    assert parse_seeds("2020, 2021,7") == [2020, 2021, 7]
    assert parse_seeds([3, 1]) == [3, 1]
    for bad, match in [("2020,2020", "distinct"), ("a,b", "not an integer"), ("1.5", "not an integer"),
                       ("", "no seeds"), ("-1", "not an integer"), ([True], "not an integer")]:
        with pytest.raises(ConfigError, match=match):
            parse_seeds(bad)
    with pytest.raises(ConfigError, match="parallel must be"):
        run_seeds("Pop", "ml-100k", [1, 2], parallel="threads")
    with pytest.raises(ConfigError, match="workers"):
        run_seeds("Pop", "ml-100k", [1, 2], parallel="processes", workers=0)
    with pytest.raises(ConfigError, match="--seed=3"):
        run_seeds("Pop", "ml-100k", [1, 2], cmd_args=["--seed=3"])
    assert threads_per_worker(2, cores=16) == 8 and threads_per_worker(4, cores=2) == 1


def test_ray_missing_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingPackageError, match="pip install -r requirements-tune.txt"):
        run_seeds("Pop", "ml-100k", [1, 2], config_dict=dict(QUICK, **_quiet(tmp_path)), parallel="ray")


def _script():
    sys.path.insert(0, REPO)
    try:
        import run_recbole
    finally:
        sys.path.remove(REPO)
    return run_recbole


def test_run_recbole_script_seeds_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    script = _script()
    args, rest = script.parse_args(["--model=Pop", "--dataset=ml-100k", "--seeds=1,2", "--seeds_parallel=processes",
                                    "--seeds_workers=2", "--epochs=1"])
    assert (args.seeds, args.seeds_parallel, args.seeds_workers, rest) == ("1,2", "processes", 2, ["--epochs=1"])
    quiet = [f"--{k}={v}" for k, v in _quiet(tmp_path).items()] + ["--metrics=['NDCG']", "--valid_metric=NDCG@10"]
    code = script.main(["--model=Pop", "--dataset=ml-100k", "--seeds=5,6", "--epochs=1"] + quiet)
    out = capsys.readouterr().out
    assert code == 0
    assert "metric" in out and "95% CI" in out and "ndcg@10" in out
    path = out.strip().splitlines()[-1].removeprefix("summary written to ")
    summary = json.load(open(path))
    assert summary["seeds"] == [5, 6] and len(summary["runs"]) == 2
    assert f"{summary['test']['ndcg@10']['mean']:.4f}" in out
    # refusals: exit 2 with a message, nothing run
    for argv, message in [(["--seeds=5,5"], "distinct"), (["--seeds=5,x"], "not an integer"),
                          (["--seeds=5,6", "--nproc=2"], "cannot be combined with --nproc"),
                          (["--seeds_workers=2"], "need --seeds"), (["--seeds=5,6", "--seed=1"], "conflicts")]:
        assert script.main(["--model=Pop", "--dataset=ml-100k"] + argv + quiet) == 2, argv
        assert message in capsys.readouterr().err
