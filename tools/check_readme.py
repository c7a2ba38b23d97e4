"""Run every command of README.md's ```bash blocks, in order, in a temporary folder, with 1 training epoch.

    python tools/check_readme.py [--readme README.md] [--keep] [--only TEXT] [--list]

The README's check (listed in its "Tests and checks"): commands that install (``make``, ``pip``, ``python3.11 -m
venv``) are skipped — CI and ``tools/check_install.sh`` run those. ``python`` is this interpreter; training
commands get ``--epochs=1`` (an ``--epochs=0`` evaluation stays 0) and quiet logging; ``<time>`` in a path stands
for the newest matching file a previous command wrote (checkpoint ``Dec-01-2026_06-33-28-357`` or summary
``20261201-063328`` stamps, with the process id). Prints one line per command with its time and exits 1 when
one fails (its output's last lines are shown). ``tests/test_readme.py`` checks the commands' shape in ``make test``.
"""

import argparse
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_PREFIXES = ("make ", "pip ", "python3.11 -m venv", ". ", "source ", "tensorboard ")
STAMP = r"(?:[A-Z][a-z]{2}-\d{2}-\d{4}_\d{2}-\d{2}-\d{2}|\d{8}-\d{6})(?:-\d+)*"
TRAINING_COMMANDS = ("run", "hyper")


def bash_blocks(text):
    """The lines of every ```bash block, continuation lines joined, comments and blank lines dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = strip_comment(line).strip()
            if line:
                commands.append(line)
    return commands


def strip_comment(line):
    """``line`` without a trailing ``# ...`` comment (a ``#`` outside quotes that starts a word)."""
    quote = None
    for i, char in enumerate(line):
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def readme_commands(path):
    """``(command, skipped)`` for every README command, in order."""
    with open(path, encoding="utf-8") as f:
        return [(cmd, cmd.startswith(SKIP_PREFIXES)) for cmd in bash_blocks(f.read())]


def subcommand(argv):
    """``run`` for ``python -m recbole_ext run ...`` (``None`` for anything else)."""
    if argv[:3] == ["python", "-m", "recbole_ext"] and len(argv) > 3:
        return argv[3]
    return None


def shorten(argv):
    """Training commands with 1 epoch (an evaluation-only ``--epochs=0`` kept) and quiet logs."""
    if subcommand(argv) not in TRAINING_COMMANDS:
        return argv
    out = [a for a in argv if not a.startswith(("--epochs=", "--show_progress=", "--state="))]
    epochs = [a for a in argv if a.startswith("--epochs=")]
    out.append("--epochs=0" if epochs == ["--epochs=0"] else "--epochs=1")
    if subcommand(argv) == "run":
        out += ["--show_progress=False", "--state=WARNING"]
    return out


def resolve_placeholders(arg, folder):
    """``saved/BPR-<time>.pth`` -> the newest file in ``folder`` matching it (``<time>`` = a run's stamp)."""
    if "<time>" not in arg:
        return arg
    prefix, _, path = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
    pattern = re.compile(re.escape(path).replace(re.escape("<time>"), STAMP) + r"\Z")
    candidates = [p for p in glob.glob(os.path.join(folder, path.replace("<time>", "*")))
                  if pattern.match(os.path.relpath(p, folder))]
    if not candidates:
        raise LookupError(f"no file matches {path} (an earlier command should have written it)")
    newest = os.path.relpath(max(candidates, key=os.path.getmtime), folder)
    return f"{prefix}={newest}" if prefix else newest


def prepare(command, folder):
    argv = shlex.split(command)
    argv = [resolve_placeholders(a, folder) for a in shorten(argv)]
    if argv[0] == "python":
        argv[0] = sys.executable
    return argv


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--only", default=None, help="run only commands containing this text")
    parser.add_argument("--list", action="store_true", help="print the commands and exit")
    args = parser.parse_args(argv)
    commands = readme_commands(args.readme)
    if args.list:
        for command, skipped in commands:
            print(("skip  " if skipped else "run   ") + command)
        return 0
    folder = tempfile.mkdtemp(prefix="readme-check-")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    failures = 0
    try:
        for command, skipped in commands:
            if skipped or (args.only and args.only not in command):
                print(f"skip        {command}")
                continue
            start = time.perf_counter()
            try:
                proc = subprocess.run(prepare(command, folder), cwd=folder, env=env, capture_output=True, text=True)
                ok, tail = proc.returncode == 0, (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            except LookupError as err:
                ok, tail = False, [str(err)]
            seconds = time.perf_counter() - start
            print(f"{'ok  ' if ok else 'FAIL'} {seconds:6.1f}s {command}", flush=True)
            if not ok:
                failures += 1
                print("\n".join("      " + line for line in tail), flush=True)
    finally:
        if args.keep:
            print(f"folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{failures} of {sum(1 for _, s in commands if not s)} commands failed" if failures else "every command ran")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
