"""Write one benchmark's section of BENCHMARKS.md (between its own markers), with machine facts."""

import fcntl
import os
import platform
import re
import shlex
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS_MD = os.path.join(ROOT, "BENCHMARKS.md")
# Resolved at import, before a benchmark changes directory: the command line a section records.
SCRIPT = os.path.abspath(sys.argv[0])
HEADER = ('# Benchmarks\n\nEvery section below is written by the script it names; numbers are measured, not edited. Quality claims: the sections over seeds ("... over seeds", "... (..., seeds)") give 95 % intervals over seeds and call a difference whose interval holds 0 a tie; a section that says "one seed" (or names a single seed) reports one run, and its differences are not evidence on their own.\n')


def machine_line():
    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = re.search(r"Model name:\s*(.+)", cpu)
        cpu_name = model.group(1).strip() if model else platform.processor()
    except OSError:
        cpu_name = platform.processor()
    return (
        f"{cpu_name}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )


def markdown_table(rows, columns):
    """rows: list of dicts; columns: list of keys (header = key)."""
    def fmt(value):
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name, body, command=None):
    """Replace (or append) the section ``name`` of BENCHMARKS.md with ``body``."""
    command = command or " ".join(["python", os.path.relpath(SCRIPT, ROOT)] + [shlex.quote(a) for a in sys.argv[1:]])
    section = (
        f"<!-- BEGIN {name} -->\n## {name}\n\nCommand: `{command}`  \nMachine: {machine_line()}\n\n"
        f"{body.strip()}\n<!-- END {name} -->\n"
    )
    # Benchmarks may finish at the same time: read-modify-write under one lock so no section is lost.
    with open(BENCHMARKS_MD + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = open(BENCHMARKS_MD, encoding="utf-8").read() if os.path.exists(BENCHMARKS_MD) else HEADER
        pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->\n", re.S)
        text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
        tmp = f"{BENCHMARKS_MD}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, BENCHMARKS_MD)
