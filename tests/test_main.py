"""``python -m recbole_ext`` (issue 16): the dispatcher, example configs by name, and the packaging metadata
(pins equal to requirements*.txt, every data file of the package shipped). The full install is checked by
tools/check_install.sh (minutes; not part of the test-suite)."""

import ast
import fnmatch
import os
import re
import subprocess
import sys

import pytest

import recbole_ext
from recbole_ext import __main__ as entry
from recbole_ext import commands
from recbole_ext.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "recbole_ext")


# --- packaging metadata -------------------------------------------------------------------------
def setup_keywords():
    """The keyword arguments of setup.py's ``setup(...)`` call (all literals, except ``packages``)."""
    tree = ast.parse(open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read())
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg != "packages"}


def requirement_lines(name):
    lines = [line.split("#", 1)[0].strip() for line in open(os.path.join(ROOT, name), encoding="utf-8")]
    return [line for line in lines if line]


def test_pins_equal_the_requirements_files():
    setup = setup_keywords()
    assert sorted(setup["install_requires"], key=str.lower) == sorted(requirement_lines("requirements.txt"), key=str.lower)
    assert setup["extras_require"]["tune"] == requirement_lines("requirements-tune.txt")
    assert setup["extras_require"]["zoo"] == requirement_lines("requirements-zoo.txt")
    for requirement in setup["install_requires"] + [r for extra in setup["extras_require"].values() for r in extra]:
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[0-9A-Za-z.+]+", requirement), requirement
    # RecBole is installed beside us with --no-deps: as a requirement pip would pull ray<=2.6.3 (docs/install.md)
    assert not any(r.lower().startswith("recbole") for r in setup["install_requires"])


def test_package_data_ships_every_data_file():
    patterns = setup_keywords()["package_data"]["recbole_ext"]
    files = [os.path.relpath(os.path.join(folder, name), PACKAGE).replace(os.sep, "/")
             for folder, _, names in os.walk(PACKAGE) for name in names
             if not name.endswith((".py", ".pyc")) and not name.startswith(".") and "__pycache__" not in folder]
    assert len(files) > 30 and "properties/overall.yaml" in files and "examples/bpr_ml-100k.yaml" in files
    # setuptools' globs: '*' never crosses a '/'
    unmatched = [f for f in files if not any(fnmatch.fnmatch(f, p) and f.count("/") == p.count("/") for p in patterns)]
    assert unmatched == []


def test_console_script_and_checkout_paths():
    assert setup_keywords()["entry_points"] == {"console_scripts": ["recbole_ext = recbole_ext.__main__:main"]}
    # the checkout's properties/ (used by the docs and tests) is the packaged examples folder
    assert os.path.realpath(os.path.join(ROOT, "properties")) == os.path.realpath(commands.EXAMPLES_DIR)
    assert "hyper_bpr_ml-100k.test" in commands.example_names() and len(commands.example_names()) >= 19


# --- example configs by name --------------------------------------------------------------------
def test_config_file_by_example_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    packaged = os.path.join(commands.EXAMPLES_DIR, "bpr_ml-100k.yaml")
    assert commands.resolve_config_file("bpr_ml-100k.yaml") == packaged
    assert commands.resolve_config_file("properties/bpr_ml-100k.yaml") == packaged  # the docs' spelling
    assert commands.config_file_list(" bpr_ml-100k.yaml  sasrec_ml-100k.yaml ") == [
        packaged, os.path.join(commands.EXAMPLES_DIR, "sasrec_ml-100k.yaml")]
    assert commands.config_file_list("") is None
    # a real path always wins
    (tmp_path / "bpr_ml-100k.yaml").write_text("epochs: 1\n")
    assert commands.resolve_config_file("bpr_ml-100k.yaml") == "bpr_ml-100k.yaml"
    # a missing file: the error names the folder and lists the examples
    with pytest.raises(ConfigError) as err:
        commands.resolve_config_file("nope.yaml")
    assert f"file not found: nope.yaml (relative paths start at {tmp_path})" in str(err.value)
    assert "bam_ml-100k.yaml, bpr_ml-100k.yaml, calitune_backbone_bpr_ml-100k.yaml" in str(err.value)
    with pytest.raises(ConfigError, match="file not found: other/bpr_ml-100k.yaml"):  # only bare names / properties/
        commands.resolve_config_file("other/bpr_ml-100k.yaml")
    assert commands.resolve_config_args(["--config_files", "sasrec_ml-100k.yaml", "--x=1"]) == [
        "--config_files", os.path.join(commands.EXAMPLES_DIR, "sasrec_ml-100k.yaml"), "--x=1"]


def test_run_with_an_example_config_by_name(tmp_path, monkeypatch, capsys):
    """bpr_ml-100k.yaml's metrics (ItemCoverage, GiniIndex, ...) reach the run when it is given by name."""
    monkeypatch.chdir(tmp_path)
    code = commands.run_main(["--model=Pop", "--dataset=ml-100k", "--config_files=bpr_ml-100k.yaml", "--epochs=1",
                              "--state=WARNING", "--show_progress=False", "--checkpoint_dir=saved"])
    out = capsys.readouterr().out
    assert code == 0 and "itemcoverage@10" in out and "giniindex@10" in out


def test_missing_config_file_exits_2_with_the_examples(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert commands.run_main(["--model=Pop", "--dataset=ml-100k", "--config_files=bpr_ml-100.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --config_files: file not found: bpr_ml-100.yaml") and "bpr_ml-100k.yaml" in err
    assert "Traceback" not in err


# --- the dispatcher ---------------------------------------------------------------------------------
def test_help_lists_the_commands(capsys):
    assert entry.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[3:]] == ["run", "hyper", "compare", "demo", "frontier",
                                                                   "examples"]
    assert entry.main([]) == 2 and "commands:" in capsys.readouterr().err
    assert entry.main(["--version"]) == 0 and capsys.readouterr().out == f"recbole_ext {recbole_ext.__version__}\n"


def test_unknown_command_exits_2_with_the_list(capsys):
    assert entry.main(["rnu", "--model=BPR"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'rnu' (did you mean 'run'?)")
    assert all(f"  {name} " in err for name in entry.COMMANDS)


def test_commands_dispatch_with_their_arguments(monkeypatch, tmp_path):
    from recbole_ext import compare, demo, frontier

    calls = []
    monkeypatch.setattr(commands, "run_main", lambda argv, prog: calls.append(("run", argv, prog)) or 0)
    monkeypatch.setattr(commands, "hyper_main", lambda argv, prog: calls.append(("hyper", argv, prog)) or 0)
    for module, name in ((compare, "compare"), (demo, "demo"), (frontier, "frontier")):
        monkeypatch.setattr(module, "main", lambda argv, name=name: calls.append((name, argv)) or 0)
    monkeypatch.chdir(tmp_path)
    for command in ("run", "hyper", "compare", "demo"):
        assert entry.main([command, "--a=1", "b"]) == 0
    assert entry.main(["frontier", "--config_files=bpr_ml-100k.yaml", "--x=ndcg@10"]) == 0
    prog = entry.prog_name()
    assert calls == [("run", ["--a=1", "b"], f"{prog} run"), ("hyper", ["--a=1", "b"], f"{prog} hyper"),
                     ("compare", ["--a=1", "b"]), ("demo", ["--a=1", "b"]),
                     ("frontier", [f"--config_files={os.path.join(commands.EXAMPLES_DIR, 'bpr_ml-100k.yaml')}",
                                   "--x=ndcg@10"])]
    assert entry.main(["frontier", "--config_files=nope.yaml"]) == 2


def test_prog_name():
    assert entry.prog_name("/x/recbole_ext/__main__.py") == "python -m recbole_ext"
    assert entry.prog_name("/venv/bin/recbole_ext") == "recbole_ext"


def test_python_m_from_another_directory(tmp_path):
    """What a user types: `python -m recbole_ext ...` outside the checkout (the package found on the path)."""
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "recbole_ext", "run", "--model=Pop", "--dataset=ml-100k",
                           "--config_files=nope.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "error: --config_files: file not found: nope.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "recbole_ext", "run", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m recbole_ext run")


def test_root_scripts_are_the_package_commands():
    import run_hyper
    import run_recbole

    assert run_recbole.parse_args is commands.parse_run_args
    assert run_recbole.format_result_table is commands.format_result_table
    assert run_hyper.parse_args is commands.parse_hyper_args and run_hyper._value is commands.hyper_value
