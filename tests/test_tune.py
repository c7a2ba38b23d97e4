"""run_hyper.py: RecBole's params-file format and a 2-trial parallel Ray Tune search (issue 8)."""

import glob
import json
import os
import subprocess
import sys

import pytest
import yaml

import recbole_ext  # noqa: F401
from recbole_ext.errors import ConfigError
from recbole_ext.tune import parse_params_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_params_file_recbole_format(tmp_path):
    path = tmp_path / "hyper.test"
    path.write_text(
        "learning_rate loguniform -8,0\n"
        "embedding_size choice [64, 96, 128]\n"
        "\n"
        "reg_weight uniform 0.0,0.1   # comment\n"
        "train_batch_size quniform 512,4096,512\n"
        "mlp choice ['[64,32]','[32]']\n"
    )
    space = parse_params_file(str(path))
    assert list(space) == ["learning_rate", "embedding_size", "reg_weight", "train_batch_size", "mlp"]
    assert space["learning_rate"] == ("loguniform", (-8.0, 0.0))
    assert space["embedding_size"] == ("choice", [64, 96, 128])
    assert space["reg_weight"] == ("uniform", (0.0, 0.1))
    assert space["train_batch_size"] == ("quniform", (512.0, 4096.0, 512.0))
    assert space["mlp"] == ("choice", ["[64,32]", "[32]"])
    for bad, message in [("lr normal 0,1", "unknown parameter type"), ("lr uniform 1,0", "bad uniform"),
                         ("lr choice 3", "non-empty list"), ("lr", "expected 'name type values'")]:
        path.write_text(bad + "\n")
        with pytest.raises(ConfigError, match=message):
            parse_params_file(str(path))


def test_loguniform_follows_recbole_log_bounds(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-tune.txt)")
    import math

    from recbole_ext.tune import ray_search_space

    space = ray_search_space({"lr": ("loguniform", (-8.0, 0.0))})
    assert space["lr"].lower == pytest.approx(math.exp(-8)) and space["lr"].upper == pytest.approx(1.0)


def test_two_trials_run_in_parallel_and_best_config_is_written(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-tune.txt)")
    params = tmp_path / "hyper.test"
    params.write_text("learning_rate choice [0.0005,0.01]\n")
    out = tmp_path / "hyper"
    env = dict(os.environ, PYTHONPATH=ROOT, RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "run_hyper.py"), "--model=BPR", "--dataset=ml-100k",
         f"--params_file={params}", "--max_concurrent=2", f"--output_dir={out}", "--epochs=1",
         "--metrics=['Recall','NDCG']", "--topk=[10]", "--valid_metric=NDCG@10"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "2 trials (grid search)" in proc.stdout and "best config written to" in proc.stdout
    summary = json.load(open(glob.glob(str(out / "*-results.json"))[0]))
    trials = summary["trials"]
    assert sorted(t["params"]["learning_rate"] for t in trials) == [0.0005, 0.01]
    assert all("error" not in t for t in trials)
    assert trials[0]["valid_score"] >= trials[1]["valid_score"] and summary["best"] == trials[0]
    assert trials[0]["valid_score"] == trials[0]["valid/ndcg@10"]
    # the two trials ran at the same time, in two worker processes
    assert trials[0]["pid"] != trials[1]["pid"]
    assert max(t["started_at"] for t in trials) < min(t["ended_at"] for t in trials)
    best = yaml.safe_load(open(glob.glob(str(out / "*-best.yaml"))[0]))
    assert best["learning_rate"] == trials[0]["params"]["learning_rate"] and best["epochs"] == 1


def test_missing_ray_is_a_clear_error(monkeypatch):
    import builtins

    from recbole_ext import tune as rt

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match="pip install -r requirements-tune.txt"):
        rt.import_ray()


def test_params_file_bounds_are_checked(tmp_path):
    path = tmp_path / "hyper.test"
    for bad in ("train_batch_size quniform 512,4096,0", "lr uniform nan,1", "lr loguniform -8,inf"):
        path.write_text(bad + "\n")
        with pytest.raises(ConfigError, match="bad (quniform|uniform|loguniform) bounds"):
            parse_params_file(str(path))


def test_probe_values_take_one_sample_of_each_parameter():
    import math

    from recbole_ext.tune import probe_values

    space = {"a": ("choice", ["[64,32]", "[32]"]), "b": ("uniform", (0.1, 0.2)), "c": ("loguniform", (-8.0, 0.0)),
             "d": ("quniform", (500.0, 4096.0, 512.0))}
    assert probe_values(space) == {"a": "[64,32]", "b": 0.1, "c": math.exp(-8.0), "d": 512.0}


@pytest.mark.parametrize("params,fixed,message", [
    ("learning_rat choice [0.01, 0.1]\n", {},
     "unknown config key 'learning_rat' \\(config_dict\\): did you mean 'learning_rate'"),
    ("learning_rate choice [0.01]\n", {"epoch": 1}, "did you mean 'epochs'"),
    ("train_batch_size choice [0, 64]\n", {}, "train_batch_size must be a whole number >= 1, got 0"),
])
def test_search_refuses_bad_keys_and_values_before_ray_starts(tmp_path, monkeypatch, params, fixed, message):
    from recbole_ext import tune as rt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rt, "import_ray", lambda: pytest.fail("Ray was started despite a bad configuration"))
    path = tmp_path / "hyper.test"
    path.write_text(params)
    with pytest.raises(ConfigError, match=message):
        rt.run_search("BPR", "ml-100k", str(path), config_dict=dict(fixed, state="WARNING"),
                      output_dir=str(tmp_path / "hyper"))
    assert not (tmp_path / "hyper").exists()


def test_run_hyper_misspelt_flag_exits_2(tmp_path):
    params = tmp_path / "hyper.test"
    params.write_text("learning_rate choice [0.01]\n")
    env = dict(os.environ, PYTHONPATH=ROOT, RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "run_hyper.py"), "--model=BPR", "--dataset=ml-100k",
         f"--params_file={params}", "--epoch=1", f"--output_dir={tmp_path / 'hyper'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "did you mean 'epochs'?" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "hyper").exists()
