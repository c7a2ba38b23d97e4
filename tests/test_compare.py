"""recbole_ext.compare: paired per-user comparison of two real runs, checked against scipy; refusals; CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recbole_ext.compare import COLUMNS, compare_runs, main, smaller_is_better
from recbole_ext.errors import ComparisonError
from recbole_ext.quick_start import run_recbole
from tests.helpers import REPO

METRICS = ["Recall", "NDCG", "Hit", "JSD"]
COMPARED = ["recall@10", "ndcg@10", "hit@10", "jsd@10"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """BPR and BPR + CP re-ranking (same seed, so the same split), both with per-user files."""
    folder = tmp_path_factory.mktemp("compare")
    config = {"show_progress": False, "state": "WARNING", "checkpoint_dir": str(folder / "saved"),
              "results_dir": str(folder / "results"), "log_wandb": False, "epochs": 1, "metrics": METRICS,
              "topk": [10], "valid_metric": "NDCG@10", "save_per_user": True}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # RecBole writes log/ under the working folder
        base = run_recbole("BPR", "ml-100k", config_dict=dict(config), cmd_args=[])
        cp = run_recbole("BPR", "ml-100k", config_dict=dict(config, rerank="cp", cp_lambda=0.5), cmd_args=[])
        other_split = run_recbole("Pop", "ml-100k", config_dict=dict(config, seed=7), cmd_args=[])
    return {"folder": folder, "a": base["summary_path"], "b": cp["summary_path"], "seed7": other_split["summary_path"]}


def _table(summary_path):
    per_user = json.load(open(summary_path))["per_user"]
    return pd.read_csv(per_user, dtype={"user_id": str}, keep_default_na=False)


def _copy_run(summary_path, folder, name, edit_summary=None, edit_table=None):
    """A copy of a run (summary + per-user CSV) with the summary and/or table changed."""
    summary = json.load(open(summary_path))
    table = _table(summary_path)
    if edit_table is not None:
        table = edit_table(table)
    csv = os.path.join(folder, f"{name}.per_user.csv")
    table.to_csv(csv, index=False)
    summary["per_user"] = csv
    if edit_summary is not None:
        edit_summary(summary)
    path = os.path.join(folder, f"{name}.json")
    json.dump(summary, open(path, "w"))
    return path


def test_paired_statistics_equal_scipy_on_the_csv_columns(runs):
    frame = compare_runs([runs["a"], runs["b"]], n_resamples=2000)
    assert list(frame.columns) == COLUMNS and list(frame["metric"]) == COMPARED
    assert set(frame["A"]) == {"BPR"} and set(frame["B"]) == {"BPR+cp"}
    a = _table(runs["a"]).set_index("user_id")
    b = _table(runs["b"]).set_index("user_id").loc[a.index]  # paired by user
    p_t = []
    for row in frame.itertuples(index=False):
        x, y = a[row.metric].to_numpy(), b[row.metric].to_numpy()
        d = x - y
        assert row.n == len(x) == 943
        assert row.mean_a == pytest.approx(x.mean(), abs=1e-12) and row.mean_b == pytest.approx(y.mean(), abs=1e-12)
        assert row.diff == pytest.approx(row.mean_a - row.mean_b, abs=1e-12)
        t = stats.ttest_rel(x, y)
        assert row.t == pytest.approx(t.statistic, rel=1e-9) and row.p_t == pytest.approx(t.pvalue, rel=1e-9)
        w = stats.wilcoxon(d)
        assert row.w == pytest.approx(w.statistic) and row.p_wilcoxon == pytest.approx(w.pvalue, rel=1e-9)
        assert row.dz == pytest.approx(d.mean() / d.std(ddof=1), rel=1e-9)
        assert row.ci_lo < row.diff < row.ci_hi
        p_t.append(t.pvalue)
    # Holm by hand over the four tests of the call: sorted p times (m - rank), running maximum, capped at 1
    order = np.argsort(p_t)
    adjusted = np.minimum(np.maximum.accumulate(np.asarray(p_t)[order] * (4 - np.arange(4))), 1.0)
    expected = np.empty(4)
    expected[order] = adjusted
    assert np.allclose(frame["p_t_holm"], expected, rtol=1e-12)
    for row in frame.itertuples(index=False):
        if row.p_t_holm >= 0.05:
            assert row.verdict == "tie"
        else:
            a_better = row.diff < 0 if row.metric == "jsd@10" else row.diff > 0
            assert row.verdict == ("A better" if a_better else "B better")
    # CP calibrates: its lists are much closer to the users' popularity profile
    jsd = frame.set_index("metric").loc["jsd@10"]
    assert jsd["diff"] > 0 and jsd["p_t_holm"] < 0.05 and jsd["verdict"] == "B better"


def test_rows_are_paired_by_user_not_by_position(runs):
    shuffled = _copy_run(runs["b"], runs["folder"], "shuffled", edit_table=lambda t: t.sample(frac=1.0, random_state=3))
    first = compare_runs([runs["a"], runs["b"]], n_resamples=500)
    second = compare_runs([runs["a"], shuffled], n_resamples=500)
    numeric = [c for c in COLUMNS if c not in ("A", "B", "verdict", "metric")]
    assert np.allclose(first[numeric].to_numpy(float), second[numeric].to_numpy(float), rtol=1e-12)


def test_all_pairs_and_holm_family(runs):
    twin = _copy_run(runs["a"], runs["folder"], "twin")
    frame = compare_runs([runs["a"], runs["b"], twin], metrics="ndcg@10,jsd@10", all_pairs=True, n_resamples=200)
    assert list(zip(frame["A"], frame["B"])) == [("BPR#1", "BPR+cp")] * 2 + [("BPR#1", "BPR#3")] * 2 + [
        ("BPR+cp", "BPR#3")] * 2
    same = frame[frame["B"] == "BPR#3"].iloc[:2]  # a run against its own copy: no difference at all
    assert (same["diff"] == 0).all() and (same["p_t"] == 1).all() and (same["verdict"] == "tie").all()
    from recbole_ext.stats import holm

    assert np.allclose(frame["p_wilcoxon_holm"], holm(frame["p_wilcoxon"]), equal_nan=True)
    assert len(frame) == 6


def test_refusals(runs):
    folder = runs["folder"]
    with pytest.raises(ComparisonError, match="at least two"):
        compare_runs([runs["a"]])
    no_file = _copy_run(runs["a"], folder, "nofile", edit_summary=lambda s: s.pop("per_user"))
    with pytest.raises(ComparisonError, match=r"no per-user file.*--save_per_user=True"):
        compare_runs([runs["a"], no_file])
    with pytest.raises(ComparisonError, match="different train/valid/test splits"):
        compare_runs([runs["a"], runs["seed7"]])  # RecBole's default random split, another seed
    other_data = _copy_run(runs["b"], folder, "otherdata", edit_summary=lambda s: s.update(dataset="ml-1m"))
    with pytest.raises(ComparisonError, match="different datasets"):
        compare_runs([runs["a"], other_data])

    def drop_three_add_one(table):
        extra = table.iloc[:1].assign(user_id="no-such-user")
        return pd.concat([table.iloc[3:], extra], ignore_index=True)

    fewer = _copy_run(runs["b"], folder, "fewer", edit_table=drop_three_add_one)
    with pytest.raises(ComparisonError, match=r"3 of BPR's 943 users are missing from BPR\+cp, 1 of BPR\+cp's 941"):
        compare_runs([runs["a"], fewer])
    with pytest.raises(ComparisonError, match="metric mrr@10 is missing"):
        compare_runs([runs["a"], runs["b"]], metrics=["ndcg@10", "mrr@10"])


def test_smaller_is_better_direction():
    assert smaller_is_better("jsd@10") and smaller_is_better("giniindex@10")
    assert not smaller_is_better("ndcg@10") and not smaller_is_better("hit@5")


def test_cli_table_out_file_and_exit_status(runs, capsys, tmp_path):
    out = tmp_path / "cmp.json"
    assert main([runs["a"], runs["b"], "--metrics", "ndcg@10,jsd@10", "--resamples", "300", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "np.float64" not in printed and "ndcg@10" in printed and "B better" in printed
    header = next(line for line in printed.splitlines() if line.startswith("A "))
    assert header.split() == COLUMNS
    written = json.load(open(out))
    frame = compare_runs([runs["a"], runs["b"]], metrics="ndcg@10,jsd@10", n_resamples=300)
    assert [r["diff"] for r in written["comparisons"]] == pytest.approx(list(frame["diff"]), rel=1e-12)
    assert written["runs"] == {"BPR": runs["a"], "BPR+cp": runs["b"]}

    no_file = _copy_run(runs["a"], runs["folder"], "nofile_cli", edit_summary=lambda s: s.pop("per_user"))
    assert main([runs["a"], no_file]) == 2
    assert "error:" in capsys.readouterr().err
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "recbole_ext.compare", runs["a"], no_file], capture_output=True,
                          text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 2 and "--save_per_user=True" in proc.stderr and "Traceback" not in proc.stderr
    assert main([runs["a"]]) == 2
    assert "error: compare needs at least two run summaries, got 1" in capsys.readouterr().err


def test_refuses_runs_whose_values_mean_different_things(runs):
    def sampled(summary):
        summary["config"]["eval_args"] = dict(summary["config"]["eval_args"], mode="uni100")

    other_mode = _copy_run(runs["b"], runs["folder"], "uni100", edit_summary=sampled)
    with pytest.raises(ComparisonError, match=r"eval_args.mode.*'full'.*'uni100'"):
        compare_runs([runs["a"], other_mode])
    other_bins = _copy_run(runs["b"], runs["folder"], "bins",
                           edit_summary=lambda s: s["config"].update(popularity_proportions=[0.1, 0.7, 0.2]))
    with pytest.raises(ComparisonError, match="popularity_proportions"):
        compare_runs([runs["a"], other_bins])
    assert len(compare_runs([runs["a"], other_bins], metrics="ndcg@10", n_resamples=100)) == 1  # not jsd: fine
