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


# --- issue 16: integer spaces, failed trials, RecBole's flags ------------------------------------
def test_integer_quniform_and_randint_are_integers(tmp_path):
    from recbole_ext.tune import integer_values, probe_values

    path = tmp_path / "hyper.test"
    path.write_text("train_batch_size quniform 500,4096,512\nembedding_size quniform 32.0,64,16\n"
                    "reg_weight quniform 0.0,0.5,0.25\nn_layers randint 1,4\n")
    space = parse_params_file(str(path))
    assert space["train_batch_size"] == ("quniform", (500, 4096, 512))
    assert all(type(v) is int for v in space["train_batch_size"][1] + space["embedding_size"][1])
    assert all(type(v) is float for v in space["reg_weight"][1])  # a fractional step: floats
    assert space["n_layers"] == ("randint", (1, 4))
    # the multiples of 512 in [500, 4096]; of 16 in [32, 64]
    assert list(integer_values((500, 4096, 512))) == [512, 1024, 1536, 2048, 2560, 3072, 3584, 4096]
    assert list(integer_values((32, 64, 16))) == [32, 48, 64]
    probe = probe_values(space)
    assert probe == {"train_batch_size": 512, "embedding_size": 32, "reg_weight": 0.0, "n_layers": 1}
    assert type(probe["train_batch_size"]) is int and type(probe["n_layers"]) is int
    for bad, message in [("x quniform 100,200,512", "no multiple of 512 between 100 and 200"),
                         ("x quniform 1,1000000,1", "at most 100000"), ("x randint 4,4", "bad randint bounds"),
                         ("x randint 1.5,4", "randint needs whole numbers"),
                         ("x choice [1]\nx choice [2]", "'x' is defined twice")]:
        path.write_text(bad + "\n")
        with pytest.raises(ConfigError, match=message):
            parse_params_file(str(path))


def test_ray_samples_integer_spaces_as_ints():
    pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-tune.txt)")
    from recbole_ext.tune import ray_search_space

    space = ray_search_space({"b": ("quniform", (500, 4096, 512)), "n": ("randint", (1, 4)),
                              "r": ("quniform", (0.0, 0.5, 0.25)), "e": ("choice", [32, 64])})
    draws = {name: [space[name].sample() for _ in range(200)] for name in space}
    assert set(draws["b"]) == {512, 1024, 1536, 2048, 2560, 3072, 3584, 4096}
    assert set(draws["n"]) == {1, 2, 3}  # high excluded
    assert set(draws["e"]) == {32, 64}
    assert all(isinstance(v, int) for name in "bne" for v in draws[name])
    assert set(draws["r"]) <= {0.0, 0.25, 0.5} and all(isinstance(v, float) for v in draws["r"])


def _summary(trials):
    return {"model": "BPR", "dataset": "ml-100k", "valid_metric": "NDCG@10", "trials": trials}


OK_TRIAL = {"params": {"learning_rate": 0.01, "train_batch_size": 2048}, "valid_score": 0.12345, "seconds": 3.5,
            "started_at": 2.0, "valid/ndcg@10": 0.12345, "test/ndcg@10": 0.1, "test/recall@10": 0.2}
FAILED_TRIAL = {"params": {"learning_rate": 0.001, "train_batch_size": 0},
                "error": "ConfigError: train_batch_size must be a whole number >= 1, got 0"}


def test_trials_table_lists_failed_trials_with_their_errors():
    from recbole_ext.tune import format_trials_table

    assert format_trials_table(_summary([OK_TRIAL, FAILED_TRIAL])).splitlines() == [
        "learning_rate  train_batch_size  valid_score  ndcg@10  recall@10  seconds",
        "         0.01              2048       0.1235      0.1        0.2      3.5",
        "1 of 2 trials failed:",
        "learning_rate  train_batch_size  error",
        "        0.001                 0  ConfigError: train_batch_size must be a whole number >= 1, got 0",
    ]
    # every trial failed (the TypeError in the printer): one table of errors
    second = dict(FAILED_TRIAL, params={"learning_rate": 0.01, "train_batch_size": 4096},
                  error="TypeError: empty(): argument 'size' must be tuple of ints")
    assert format_trials_table(_summary([FAILED_TRIAL, second])).splitlines() == [
        "2 of 2 trials failed:",
        "learning_rate  train_batch_size  error",
        "        0.001                 0  ConfigError: train_batch_size must be a whole number >= 1, got 0",
        "         0.01              4096  TypeError: empty(): argument 'size' must be tuple of ints",
    ]
    assert format_trials_table(_summary([])) == "no trials ran"


def test_error_line_names_the_cause():
    from recbole_ext.tune import error_line

    class Wrapped(Exception):
        def __init__(self, cause):
            super().__init__("ray::ImplicitFunc.train() (pid=1, ip=1.2.3.4)\n  File 'x.py', line 1\n...")
            self.cause = cause

    assert error_line(Wrapped(ConfigError("bad value for x"))) == "ConfigError: bad value for x"
    text = ("ray::ImplicitFunc.train() (pid=1)\nTraceback (most recent call last):\n  File \"a.py\", line 3, in f\n"
            "recbole_ext.errors.ConfigError: train_batch_size must be a whole number >= 1, got 0\n")
    assert error_line(RuntimeError(text)) == "ConfigError: train_batch_size must be a whole number >= 1, got 0"
    assert error_line(ValueError("one line")) == "ValueError: one line"


def test_recbole_output_file_and_display_file(tmp_path):
    from recbole_ext.tune import write_display_file, write_recbole_result

    path = write_recbole_result(_summary([OK_TRIAL, FAILED_TRIAL]), str(tmp_path / "out" / "hyper.result"))
    assert open(path).read() == (
        "learning_rate:0.01, train_batch_size:2048\nValid result:\nndcg@10 : 0.12345\n"
        "Test result:\nndcg@10 : 0.1    recall@10 : 0.2\n\n"
        "learning_rate:0.001, train_batch_size:0\n"
        "Error: ConfigError: train_batch_size must be a whole number >= 1, got 0\n"
    )
    html = open(write_display_file(_summary([OK_TRIAL, FAILED_TRIAL]), str(tmp_path / "plot.html"))).read()
    assert "<html>" in html and "learning_rate=0.01, train_batch_size=2048" in html
    assert "train_batch_size=0" not in html  # failed trials have no score to plot


def test_run_hyper_accepts_recbole_flags():
    from recbole_ext.commands import parse_hyper_args

    args, rest = parse_hyper_args(["--config_files=a.yaml b.yaml", "--params_file=h.test", "--output_file=o.result",
                                   "--display_file=d.html", "--tool=Hyperopt", "--epochs=1"])
    assert (args.model, args.dataset, args.config_files, args.params_file) == (None, None, "a.yaml b.yaml", "h.test")
    assert (args.output_file, args.display_file, args.tool, rest) == ("o.result", "d.html", "Hyperopt", ["--epochs=1"])


@pytest.mark.parametrize("params,flags,message", [
    ("learning_rate uniform 0.001,0.01\n", ["--tool=Hyperopt"], "every parameter must be a choice"),
    ("learning_rate choice [0.01]\n", ["--tool=Hyperopt", "--max_trials=3"], "--max_trials cannot be set"),
    ("learning_rate choice [0.01]\n", ["--tool=Optuna"], "one of Ray, Hyperopt"),
])
def test_tool_flag_is_checked_before_ray_starts(tmp_path, monkeypatch, capsys, params, flags, message):
    from recbole_ext import commands
    from recbole_ext import tune as rt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rt, "import_ray", lambda: pytest.fail("Ray was started despite a bad flag"))
    (tmp_path / "h.test").write_text(params)
    assert commands.hyper_main(["--model=BPR", "--dataset=ml-100k", "--params_file=h.test"] + flags) == 2
    assert message in capsys.readouterr().err


def test_model_and_dataset_may_come_from_the_config_files(tmp_path, monkeypatch):
    """RecBole's run_hyper.py takes no --model/--dataset: they are in the config files."""
    from recbole_ext import tune as rt

    class RayReached(Exception):
        pass

    def reached():
        raise RayReached

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rt, "import_ray", reached)
    (tmp_path / "h.test").write_text("learning_rate choice [0.01]\n")
    (tmp_path / "c.yaml").write_text("model: BPR\ndataset: ml-100k\nstate: WARNING\n")
    with pytest.raises(RayReached):  # the configuration was accepted: the search was about to start
        rt.run_search(None, None, "h.test", config_file_list=["c.yaml"], output_dir=str(tmp_path / "hyper"))


def test_params_file_by_example_name(tmp_path, monkeypatch):
    from recbole_ext.commands import resolve_config_file

    monkeypatch.chdir(tmp_path)
    path = resolve_config_file("hyper_bpr_ml-100k.test", "--params_file")
    assert parse_params_file(path) == {"learning_rate": ("choice", [0.001, 0.005]),
                                       "embedding_size": ("choice", [32, 64])}


@pytest.mark.slow  # a second Ray search (about a minute on 2 shared cores); the table itself is tested above
def test_failed_trials_are_tabled_and_the_search_still_succeeds(tmp_path):
    """Two trials on Ray: train_batch_size 0 fails inside its worker (the probe checks only the first
    choice), 2048 succeeds; the table lists the failure with its error line; RecBole's output file."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-tune.txt)")
    (tmp_path / "h.test").write_text("train_batch_size choice [2048, 0]\n")
    env = dict(os.environ, PYTHONPATH=ROOT, RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "recbole_ext", "hyper", "--model=BPR", "--dataset=ml-100k", "--params_file=h.test",
         "--max_concurrent=2", f"--output_dir={tmp_path / 'hyper'}", "--output_file=h.result", "--epochs=1",
         "--metrics=['NDCG']", "--topk=[10]", "--valid_metric=NDCG@10", "--verbose=0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = proc.stdout[proc.stdout.index("2 trials (grid search)"):].splitlines()
    assert out[1].split() == ["train_batch_size", "valid_score", "ndcg@10", "seconds"]
    assert out[2].split()[0] == "2048"
    assert out[3:6] == ["1 of 2 trials failed:", "train_batch_size  error",
                        "               0  ConfigError: train_batch_size must be a whole number >= 1, got 0"]
    summary = json.load(open(glob.glob(str(tmp_path / "hyper" / "*-results.json"))[0]))
    assert [t["params"]["train_batch_size"] for t in summary["trials"]] == [2048, 0]
    assert "Error: ConfigError: train_batch_size" in (tmp_path / "h.result").read_text()
