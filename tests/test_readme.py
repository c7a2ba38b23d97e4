"""The README's commands (run in full by tools/check_readme.py, its documented check) have the right shape:
each names a real subcommand or module, its config files exist among the packaged examples, and its links
point at files of the repository."""

import importlib.util
import os
import re
import shlex

from recbole_ext.__main__ import COMMANDS
from recbole_ext.commands import resolve_config_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def _check_readme():
    spec = importlib.util.spec_from_file_location("check_readme", os.path.join(ROOT, "tools", "check_readme.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_command_names_a_subcommand_and_existing_config_files():
    commands = [c for c, skipped in _check_readme().readme_commands(README) if not skipped]
    assert len(commands) >= 20
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "python", command  # one command form throughout
        if argv[1] == "-m":
            module = argv[2]
            if module == "recbole_ext":
                assert argv[3] in COMMANDS, command
            else:
                assert importlib.util.find_spec(module) is not None, command
        for arg in argv:
            if arg.startswith(("--config_files=", "--params_file=")):
                for name in arg.split("=", 1)[1].split():
                    assert os.path.isfile(resolve_config_file(name)), (name, command)


def test_placeholders_resolve_to_the_newest_matching_run(tmp_path):
    check = _check_readme()
    saved = tmp_path / "saved"
    saved.mkdir()
    for name in ["BPR-Dec-01-2026_06-33-28-357.pth", "BPR-MoRec-Dec-01-2026_06-40-00-9.pth"]:
        (saved / name).write_text("x")
    assert check.resolve_placeholders("--pretrained_model_file=saved/BPR-<time>.pth", str(tmp_path)) == (
        "--pretrained_model_file=saved/BPR-Dec-01-2026_06-33-28-357.pth")
    assert check.shorten(shlex.split("python -m recbole_ext run --model=BPR --epochs=0")).count("--epochs=0") == 1
    assert "--epochs=1" in check.shorten(shlex.split("python -m recbole_ext run --model=BPR --epochs=50"))


def test_links_point_at_files_of_the_repository():
    text = open(README, encoding="utf-8").read()
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if not os.path.exists(os.path.join(ROOT, t))]
    assert missing == []


def test_the_front_page_stays_short():
    assert len(open(README, encoding="utf-8").read().splitlines()) < 400
