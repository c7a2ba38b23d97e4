"""``python -m recbole_ext <command> [arguments]`` (also the ``recbole_ext`` console script), from any
directory after ``pip install``:

    run       train and evaluate a model (run_recbole.py): --model=BPR --dataset=ml-100k [--config_files=...]
    hyper     parallel hyper-parameter search on Ray Tune (run_hyper.py): --params_file=... [--tool=Ray]
    compare   paired per-user comparison of run summaries (python -m recbole_ext.compare)
    demo      the demo on ml-100k (python -m recbole_ext.demo)
    frontier  trade-off frontier of a re-ranking / trade-off knob (python -m recbole_ext.frontier)

``python -m recbole_ext <command> --help`` shows a command's flags. A config file given by a bare name
(``--config_files=bpr_ml-100k.yaml``) that is not found in the working directory is taken from the
examples shipped with the package; ``python -m recbole_ext examples`` lists them. An unknown command
exits with status 2 and the list of commands.
"""

import difflib
import os
import sys

COMMANDS = {
    "run": "train and evaluate a model (as run_recbole.py)",
    "hyper": "parallel hyper-parameter search on Ray Tune (as run_hyper.py)",
    "compare": "paired per-user comparison of run summaries",
    "demo": "the demo on ml-100k",
    "frontier": "trade-off frontier (accuracy against a second metric)",
    "examples": "list the example config files shipped with the package (usable by name)",
}
EXIT_USAGE = 2


def prog_name(argv0=None):
    """How the user started us: ``python -m recbole_ext`` or the console script's name."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    base = os.path.basename(argv0 or "")
    return "python -m recbole_ext" if base in ("", "__main__.py", "-m", "-c") else base


def usage(prog):
    width = max(map(len, COMMANDS))
    lines = [f"usage: {prog} <command> [arguments]   ({prog} <command> --help for its flags)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog_name()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(prog), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else EXIT_USAGE
    if argv[0] in ("-V", "--version"):
        from recbole_ext import __version__

        print(f"recbole_ext {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"error: unknown command '{command}'{hint}\n{usage(prog)}", file=sys.stderr)
        return EXIT_USAGE
    sub = f"{prog} {command}"
    if command == "run":
        from recbole_ext.commands import run_main

        return run_main(rest, prog=sub)
    if command == "hyper":
        from recbole_ext.commands import hyper_main

        return hyper_main(rest, prog=sub)
    if command == "examples":
        from recbole_ext.commands import EXAMPLES_DIR, example_names

        print(f"example configs in {EXAMPLES_DIR} (give them by name, e.g. --config_files=bpr_ml-100k.yaml):")
        print("\n".join(f"  {name}" for name in example_names()))
        return 0
    if command == "compare":
        from recbole_ext.compare import main as compare_main

        return compare_main(rest)
    if command == "demo":
        from recbole_ext.demo import main as demo_main

        return demo_main(rest)
    from recbole_ext.cli import error_message
    from recbole_ext.commands import resolve_config_args
    from recbole_ext.errors import ConfigError
    from recbole_ext.frontier import main as frontier_main

    try:  # frontier's own parser takes paths: resolve example names first
        rest = resolve_config_args(rest)
    except ConfigError as err:
        print(error_message(err), file=sys.stderr)
        return EXIT_USAGE
    return frontier_main(rest)


if __name__ == "__main__":
    sys.exit(main())
