"""`make demo` machinery: real ml-100k runs through run_recbole, one table row per model."""

from recbole_ext.demo import COLUMNS, format_table, run_demo


def test_demo_runs_and_formats_a_table(run_dir):
    rows = run_demo(models={"Pop", "EASE", "BPR + CP"}, quick=True)
    assert [row["model"] for row in rows] == ["Pop", "BPR + CP", "EASE"]
    by_model = {row["model"]: row for row in rows}
    assert by_model["EASE"]["ndcg@10"] > by_model["Pop"]["ndcg@10"]
    table = format_table(rows)
    assert all(column in table for column in COLUMNS)
    assert len(table.splitlines()) == 2 + len(rows)
