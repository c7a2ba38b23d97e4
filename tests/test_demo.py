"""`make demo` machinery: real ml-100k runs through run_recbole, one table row per model."""

import re

from recbole_ext.demo import COLUMNS, comparison, format_table, run_demo


def test_demo_runs_and_formats_a_table(run_dir):
    rows = run_demo(models={"Pop", "BPR", "EASE", "BPR + CP"}, quick=True)
    assert [row["model"] for row in rows] == ["Pop", "BPR", "BPR + CP", "EASE"]
    by_model = {row["model"]: row for row in rows}
    assert by_model["EASE"]["ndcg@10"] > by_model["Pop"]["ndcg@10"]
    table = format_table(rows)
    assert all(column in table for column in COLUMNS)
    assert len(table.splitlines()) == 2 + len(rows)


def test_demo_comparison_states_the_paired_test(run_dir):
    rows = run_demo(models={"BPR", "BPR + CP"}, quick=True)
    text = comparison(rows)
    by_model = {row["model"]: row for row in rows}
    lines = text.splitlines()
    assert "943 test users" in lines[0] and len(lines) == 4
    ndcg = next(line for line in lines if line.strip().startswith("ndcg@10"))
    assert f"{by_model['BPR + CP']['ndcg@10']:.4f} vs {by_model['BPR']['ndcg@10']:.4f}" in ndcg
    assert re.search(r"paired t p = \S+, Wilcoxon p = \S+ +-> (BPR better|BPR \+ CP better|tie)$", ndcg), ndcg
    assert comparison([row for row in rows if row["model"] == "BPR"]) is None
