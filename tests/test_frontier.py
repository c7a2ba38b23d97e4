"""Trade-off frontiers (recbole_ext.frontier): the Pareto mask on a worked example, metric directions,
intervals over seeds and over users, a CP sweep over a tiny BPR checkpoint, and the command line."""

import csv
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from recbole_ext.errors import ConfigError
from recbole_ext.frontier import aggregate, main, pareto_front, parse_values, run_frontier, smaller_is_better
from recbole_ext.quick_start import run_recbole

QUICK = {"metrics": ["NDCG", "JSD"], "topk": [10], "valid_metric": "NDCG@10"}


def _quiet(base):
    return {"show_progress": False, "state": "WARNING", "log_wandb": False,
            "checkpoint_dir": str(base / "saved"), "results_dir": str(base / "saved" / "results")}


def test_pareto_front_worked_example():
    # x = jsd (smaller better), y = ndcg (bigger better)
    #   A (0.30, 0.20)  B (0.10, 0.15)  C (0.20, 0.14)  D (0.05, 0.10)  E (0.30, 0.18)  F = B
    # C is dominated by B (lower jsd, higher ndcg); E by A (same jsd, lower ndcg); A, B, D, F are not
    x = [0.30, 0.10, 0.20, 0.05, 0.30, 0.10]
    y = [0.20, 0.15, 0.14, 0.10, 0.18, 0.15]
    assert pareto_front(x, y, x_smaller=True, y_smaller=False).tolist() == [True, True, False, True, False, True]
    # both bigger-is-better: only A = (0.30, 0.20) is optimal
    assert pareto_front(x, y).tolist() == [True, False, False, False, False, False]
    assert pareto_front([1.0], [2.0]).tolist() == [True]
    with pytest.raises(ValueError, match="finite"):
        pareto_front([1.0, np.nan], [1.0, 2.0])


def test_metric_directions_and_values():
    assert smaller_is_better("jsd@10") and smaller_is_better("miscalkl@5") and smaller_is_better("jsd_niche@10")
    assert not smaller_is_better("ndcg@10") and not smaller_is_better("ndcg_niche@10") and not smaller_is_better("hit@10")
    assert parse_values("0, 0.25,1") == [0, 0.25, 1] and parse_values("cp,none") == ["cp", "none"]
    assert parse_values("[0.1,0.1,0.1,0.7]; [0.3,0.3,0.3,0.1]") == [[0.1, 0.1, 0.1, 0.7], [0.3, 0.3, 0.3, 0.1]]
    for bad in ("", "0,,1", "0,0"):
        with pytest.raises(ConfigError):
            parse_values(bad)


def test_aggregate_over_seeds_and_over_users(tmp_path):
    runs = [{"jsd@10": 0.2, "ndcg@10": 0.30}, {"jsd@10": 0.4, "ndcg@10": 0.10}, {"jsd@10": 0.3, "ndcg@10": 0.20}]
    agg = aggregate(runs, "jsd@10", "ndcg@10")
    half = sps.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)  # sd of (0.2, 0.4, 0.3) is 0.1
    assert agg["jsd@10_mean"] == pytest.approx(0.3) and agg["n_seeds"] == 3
    assert (agg["jsd@10_lo"], agg["jsd@10_hi"]) == pytest.approx((0.3 - half, 0.3 + half))
    assert (agg["ndcg@10_lo"], agg["ndcg@10_hi"]) == pytest.approx((0.2 - half, 0.2 + half))
    assert agg["interval"] == "t over 3 seeds"
    # one seed with a per-user file: the t-interval over the users, around the run's test value
    path = tmp_path / "run.per_user.csv"
    path.write_text("user_id,ndcg@10,jsd@10\n1,0.0,0.1\n2,0.5,0.3\n3,1.0,0.2\n4,0.5,0.2\n")
    one = aggregate([{"jsd@10": 0.2, "ndcg@10": 0.5, "per_user": str(path)}], "jsd@10", "ndcg@10")
    sd = np.std([0.0, 0.5, 1.0, 0.5], ddof=1)
    half = sps.t.ppf(0.975, 3) * sd / 2
    assert (one["ndcg@10_lo"], one["ndcg@10_hi"]) == pytest.approx((0.5 - half, 0.5 + half))
    assert one["interval"] == "t over 4 test users (one seed)"
    # one seed, no per-user values: no interval, and said so
    none = aggregate([{"jsd@10": 0.2, "ndcg@10": 0.5, "per_user": None}], "jsd@10", "ndcg@10")
    assert none["jsd@10_lo"] is None and none["ndcg@10_hi"] is None and none["interval"].startswith("none")


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    base = tmp_path_factory.mktemp("frontier")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        result = run_recbole("BPR", "ml-100k", config_dict=dict(QUICK, epochs=1, **_quiet(base)), cmd_args=[])
    return base, result


def test_cp_sweep_over_a_checkpoint(backbone, monkeypatch):
    base, plain = backbone
    monkeypatch.chdir(base)
    out = run_frontier("BPR", "ml-100k", "cp_lambda", "0,0.5", checkpoint=plain["checkpoint"],
                       config_dict=dict(QUICK, **_quiet(base)), out_dir=str(base / "fr"))
    rows = list(csv.DictReader(open(out["csv"])))
    assert [r["cp_lambda"] for r in rows] == ["0", "0.5"]
    assert {"seed", "jsd@10", "ndcg@10", "test_ndcg@10", "test_jsd@10", "summary_path"} <= set(rows[0])
    # cp_lambda 0 is the backbone's own ranking: its test metrics, to the printed digit
    assert float(rows[0]["ndcg@10"]) == plain["test_result"]["ndcg@10"]
    assert float(rows[0]["jsd@10"]) == plain["test_result"]["jsd@10"]
    assert float(rows[1]["jsd@10"]) < float(rows[0]["jsd@10"])  # CP calibrates
    points = list(csv.DictReader(open(out["agg_csv"])))
    assert [p["cp_lambda"] for p in points] == ["0", "0.5"] and all(p["n_seeds"] == "1" for p in points)
    for row, point in zip(rows, out["points"]):
        # one seed: the t-interval over the test users of the run's per-user file (save_per_user)
        users = pd.read_csv(row["per_user"])
        assert point["interval"] == f"t over {len(users)} test users (one seed)" and len(users) > 900
        for metric in ("jsd@10", "ndcg@10"):
            values = users[metric].to_numpy()
            half = sps.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
            assert point[f"{metric}_mean"] == pytest.approx(values.mean(), abs=1e-12)
            assert round(point[f"{metric}_mean"], 4) == float(row[metric])  # the run's reported value
            assert (point[f"{metric}_lo"], point[f"{metric}_hi"]) == pytest.approx(
                (values.mean() - half, values.mean() + half), abs=1e-12)
    front = pareto_front([float(r["jsd@10"]) for r in rows], [float(r["ndcg@10"]) for r in rows], True, False)
    assert [p["pareto"] == "True" for p in points] == front.tolist()
    assert os.path.getsize(out["png"]) > 10_000


def test_frontier_over_seeds_trains_each_point(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = run_frontier("Pop", "ml-100k", "cp_lambda", "0,0.5", seeds="1,2",
                       config_dict=dict(QUICK, epochs=1, rerank="cp", **_quiet(tmp_path)), out_dir=str(tmp_path / "fr"))
    rows = out["rows"]
    assert [(r["value"], r["seed"]) for r in rows] == [(0, 1), (0, 2), (0.5, 1), (0.5, 2)]
    for value, point in zip((0, 0.5), out["points"]):
        ys = [r["ndcg@10"] for r in rows if r["value"] == value]
        half = sps.t.ppf(0.975, 1) * np.std(ys, ddof=1) / np.sqrt(2)
        assert point["ndcg@10_mean"] == pytest.approx(np.mean(ys))
        assert (point["ndcg@10_lo"], point["ndcg@10_hi"]) == pytest.approx((np.mean(ys) - half, np.mean(ys) + half))
        assert point["interval"] == "t over 2 seeds"
    assert os.path.isfile(out["png"])


def test_command_line_refusals(backbone, tmp_path, monkeypatch, capsys):
    base, plain = backbone
    monkeypatch.chdir(tmp_path)
    common = ["--model=BPR", "--dataset=ml-100k", "--knob=cp_lambda"]
    for argv, message in [
        (["--values=0,0"], "repeats"),
        (["--values=0,1", "--cp_lambda=0.3"], "swept knob"),
        (["--values=0,1", "--seeds=1,1"], "distinct"),
        (["--values=0,1", f"--checkpoint={plain['checkpoint']}", "--seeds=1,2"], "split"),
        (["--values=0,1", f"--checkpoint={plain['checkpoint']}", "--epochs=3"], "--trainer"),
        (["--values=0,1", "--checkpoint=nowhere.pth"], "no such file"),
        (["--values=0,1", "stray"], "--key=value"),
    ]:
        assert main(common + argv) == 2, argv
        assert message in capsys.readouterr().err, argv
