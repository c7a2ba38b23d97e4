"""The ``run`` and ``hyper`` command lines (layer 6), shared by ``python -m recbole_ext run|hyper``, the
``recbole_ext`` console script and the checkout's ``run_recbole.py`` / ``run_hyper.py`` (thin wrappers).

Config files named on a command line (``--config_files``, ``--params_file``) are looked up by
:func:`resolve_config_file`: a path that exists (relative to the working directory, or absolute) always
wins; otherwise a bare name such as ``bpr_ml-100k.yaml`` (or ``properties/bpr_ml-100k.yaml``, the
checkout's spelling) is taken from the example configs shipped in the package
(``recbole_ext/examples/``, :func:`example_names`), so that the documented commands work from any
directory after ``pip install``. A name found in neither place is an error that lists the examples.
"""

import argparse
import os
import sys

from recbole_ext.errors import ConfigError

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "examples")
#: the folder the checkout's docs use for the examples (a link to ``recbole_ext/examples``)
EXAMPLES_ALIAS = "properties"


# --- example configs, by name -------------------------------------------------------------------
def example_names():
    """The example configs and params files shipped in the package, sorted."""
    if not os.path.isdir(EXAMPLES_DIR):
        return []
    return sorted(n for n in os.listdir(EXAMPLES_DIR) if n.endswith((".yaml", ".yml", ".test")))


def resolve_config_file(path, flag="--config_files"):
    """``path`` when it exists; else the packaged example of that name (``name`` or ``properties/name``)
    as an absolute path; else :class:`ConfigError` naming the working directory and the examples."""
    if os.path.exists(path):
        return path
    folder, name = os.path.split(os.path.normpath(path))
    if folder in ("", EXAMPLES_ALIAS) and name in example_names():
        return os.path.join(EXAMPLES_DIR, name)
    raise ConfigError(
        f"{flag}: file not found: {path} (relative paths start at {os.getcwd()}); the examples shipped with "
        f"recbole_ext can be given by name: {', '.join(example_names()) or '(none installed)'}"
    )


def config_file_list(text, flag="--config_files"):
    """``--config_files="a.yaml b.yaml"`` as a list of paths (each through :func:`resolve_config_file`),
    or ``None`` when not given."""
    if not text or not text.strip():
        return None
    return [resolve_config_file(p, flag) for p in text.split()]


def resolve_config_args(argv):
    """``argv`` with the paths of ``--config_files=...`` / ``--config_files ...`` resolved (for commands
    whose own parser does not look up example names)."""
    out, i = [], 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config_files="):
            arg = "--config_files=" + " ".join(config_file_list(arg.split("=", 1)[1]) or [])
        elif arg == "--config_files" and i + 1 < len(argv):
            out.append(arg)
            i += 1
            arg = " ".join(config_file_list(argv[i]) or [])
        out.append(arg)
        i += 1
    return out


# --- run -----------------------------------------------------------------------------------------
RUN_PROG = "python run_recbole.py"
RUN_DOC = """Train and evaluate a model the RecBole way, with recbole_ext's models, trainers and metrics.

    {prog} --model=BPR --dataset=ml-100k [--config_files="a.yaml b.yaml"] [--key=value ...]

Every other ``--key=value`` flag is configuration, exactly as with RecBole's own script. Prints
RecBole's best-valid / test lines and writes a JSON summary under ``saved/results/``. A config file
that is not found relative to the working directory is looked up by name among the examples shipped
with recbole_ext (``--config_files=bpr_ml-100k.yaml``).

A mistake in the input (configuration, data files, names) prints ``error: ...`` and exits with status 2;
``--debug`` (or ``RECBOLE_EXT_DEBUG=1``) shows the traceback instead. Ctrl-C exits with status 130 and
prints the last checkpoint and the command that resumes from it.

Several seeds (one run each; mean, sd and 95 % t-interval per metric; docs/seeds-and-frontiers.md):

    {prog} --model=BPR --dataset=ml-100k --seeds=2020,2021,2022 [--seeds_parallel=processes|ray] [--seeds_workers=N]

Multi-process training (torch.distributed DDP), RecBole's flags:

    {prog} --model=BPR --dataset=ml-100k --nproc=2            # one machine
    {prog} ... --nproc=2 --world_size=4 --ip=HOST0 --port=29500 --group_offset=0  # machine 0
    {prog} ... --nproc=2 --world_size=4 --ip=HOST0 --port=29500 --group_offset=2  # machine 1

``--dist_backend=gloo|nccl`` picks the backend (default NCCL on CUDA, Gloo on CPU). On one machine
without ``--port`` a free local port is chosen. See docs/distributed.md.
"""


def parse_run_args(argv, prog=RUN_PROG):
    # allow_abbrev=False: RecBole's --seed=... is configuration, not an abbreviation of --seeds
    parser = argparse.ArgumentParser(prog=prog, description=RUN_DOC.format(prog=prog),
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--model", "-m", type=str, default=None, help="model name (recbole_ext or RecBole)")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="dataset name")
    parser.add_argument("--config_files", type=str, default=None,
                        help="space-separated config files (paths, or names of the packaged examples)")
    parser.add_argument("--nproc", type=int, default=1, help="processes to start on this machine")
    parser.add_argument("--ip", type=str, default="localhost", help="address of the rank-0 machine")
    parser.add_argument("--port", type=str, default=None, help="port of the rank-0 machine (free one if unset)")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all machines (default: nproc)")
    parser.add_argument("--group_offset", type=int, default=0, help="global rank of this machine's first process")
    parser.add_argument("--seeds", type=str, default=None, help="comma-separated seeds: one run each, summarised")
    parser.add_argument("--seeds_parallel", type=str, default=None, choices=["processes", "ray"],
                        help="run the seeds in a process pool or as Ray tasks (default: one after the other)")
    parser.add_argument("--seeds_workers", type=int, default=None, help="parallel seed runs (default: min(seeds, cores))")
    return parser.parse_known_args(argv)


def run_distributed(args, config_files, rest):
    """Start ``args.nproc`` processes (RecBole's run_recbole.py pattern); return global rank 0's result, or
    None on a machine that does not hold rank 0."""
    from recbole_ext import distributed
    from recbole_ext.quick_start import run_recboles

    world_size = args.world_size if args.world_size > 0 else args.nproc
    if args.nproc < 1 or world_size < args.nproc + args.group_offset:
        raise ConfigError(
            f"--nproc={args.nproc} --group_offset={args.group_offset} do not fit in --world_size={world_size}"
        )
    port = args.port
    if port is None:
        if world_size != args.nproc:
            raise ConfigError("a multi-machine run (--world_size > --nproc) needs the same --port on every machine")
        port = distributed.free_port("127.0.0.1" if args.ip in ("localhost", "127.0.0.1") else "")
    results = distributed.launch(run_recboles, args.model, args.dataset, args.nproc, config_file_list=config_files,
                                 cmd_args=rest, ip=args.ip, port=port, world_size=world_size,
                                 offset=args.group_offset)
    return next((r for r in results if r.get("rank") == 0), None)


def run_main(argv=None, prog=RUN_PROG):
    """``run``: one training and evaluation run (or several seeds, or several processes)."""
    from recbole_ext.cli import run_command

    return run_command(lambda args: run_body(args, prog), sys.argv[1:] if argv is None else argv, prog=prog)


def run_body(argv, prog=RUN_PROG):
    args, rest = parse_run_args(argv, prog)
    unknown = [a for a in rest if not (a.startswith("--") and "=" in a)]
    if unknown:
        print(f"error: arguments must look like --key=value; not understood: {' '.join(unknown)}", file=sys.stderr)
        return 2
    from recbole_ext.quick_start import run_recbole

    config_files = config_file_list(args.config_files)
    if args.seeds is not None:
        return run_seeds_command(args, config_files, rest)
    if args.seeds_parallel or args.seeds_workers is not None:
        print("error: --seeds_parallel / --seeds_workers need --seeds", file=sys.stderr)
        return 2
    if args.nproc == 1 and args.world_size <= 0:
        result = run_recbole(model=args.model, dataset=args.dataset, config_file_list=config_files, cmd_args=rest)
    else:
        result = run_distributed(args, config_files, rest)
        if result is None:  # not this machine's rank 0: it prints nothing
            return 0
    print(format_result_table(result))
    if "checkpoint" in result:  # None: an evaluation-only run (epochs: 0) wrote none
        print(f"checkpoint: {result['checkpoint']}")
    if result.get("summary_path"):
        print(f"summary written to {result['summary_path']}")
    return 0


def run_seeds_command(args, config_files, rest):
    """``--seeds=a,b,c``: one run per seed (recbole_ext.seeds.run_seeds), a mean / sd / 95 % CI table."""
    from recbole_ext.seeds import format_seeds_table, run_seeds

    if args.nproc != 1 or args.world_size > 0:
        print("error: --seeds cannot be combined with --nproc / --world_size (multi-process runs): use "
              "--seeds_parallel=processes to run the seeds side by side", file=sys.stderr)
        return 2
    summary = run_seeds(args.model, args.dataset, args.seeds, config_file_list=config_files, cmd_args=rest,
                        parallel=args.seeds_parallel, workers=args.seeds_workers)
    print(format_seeds_table(summary))
    print(f"summary written to {summary['path']}")
    return 0


def format_result_table(result):
    valid = result["best_valid_result"] or {}
    test = result["test_result"] or {}
    names = list(test) or list(valid)
    width = max([len(n) for n in names] + [6])
    procs = f", {result['world_size']} processes ({result['dist_backend']})" if result.get("world_size") else ""
    lines = [
        f"{result.get('title') or result['model'] + ' on ' + result['dataset']}  (train {result['train_seconds']:.1f}s, "
        f"eval {result['eval_seconds']:.1f}s{procs})"
    ]
    lines.append(f"{'metric':<{width}}  {'valid':>8}  {'test':>8}")
    for name in names:
        v = valid.get(name)
        lines.append(f"{name:<{width}}  {'' if v is None else f'{v:8.4f}':>8}  {test.get(name, float('nan')):8.4f}")
    return "\n".join(lines)


# --- hyper ---------------------------------------------------------------------------------------
HYPER_PROG = "python run_hyper.py"
HYPER_DOC = """Parallel hyper-parameter search on Ray Tune, RecBole's params-file format and flags.

    {prog} --model=BPR --dataset=ml-100k --params_file=hyper.test \\
        [--config_files="a.yaml"] [--address=HOST:6379] [--max_trials=N] [--max_concurrent=N] \\
        [--cpus_per_trial=1] [--output_dir=saved/hyper] [--output_file=F] [--display_file=F.html] [--key=value ...]

Needs Ray (``pip install "recbole_ext[tune]"``, in a checkout ``pip install -r requirements-tune.txt``).
Starts a local Ray instance (stopped at the end) unless ``--address`` names a running cluster (every
node needs recbole_ext installed). Every other ``--key=value`` is fixed configuration for all trials.
``--model`` / ``--dataset`` may instead come from the config files, as with RecBole's run_hyper.py.
Prints Tune's progress, then a results table (best first) and a table of the failed trials with their
errors, and writes the best configuration (``*-best.yaml``, usable as --config_files) and all trials
(``*-results.json``) under ``saved/hyper/``.

RecBole's run_hyper.py flags: ``--config_files``, ``--params_file`` (paths, or names of the packaged
examples), ``--output_file`` (RecBole's text export: each trial's parameters, valid and test results),
``--display_file`` (an HTML plot of the valid score per trial), ``--tool=Ray`` (the default) or
``--tool=Hyperopt`` (RecBole's exhaustive search: every parameter a ``choice``; it runs on Ray Tune too).

A mistake in the input prints ``error: ...`` and exits with status 2; ``--debug`` (or
``RECBOLE_EXT_DEBUG=1``) shows the traceback instead.
"""
TOOLS = ("ray", "hyperopt")


def parse_hyper_args(argv, prog=HYPER_PROG):
    parser = argparse.ArgumentParser(prog=prog, description=HYPER_DOC.format(prog=prog),
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--model", "-m", type=str, default=None, help="model (default: from the config files)")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="dataset (default: from the config files)")
    parser.add_argument("--params_file", type=str, required=True, help="RecBole hyper-parameter file")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated config files")
    parser.add_argument("--address", type=str, default=None, help="Ray cluster address (default: local Ray)")
    parser.add_argument("--max_trials", type=int, default=None,
                        help="trials to sample (default: the full grid when all parameters are choices, else 10)")
    parser.add_argument("--max_concurrent", type=int, default=None, help="trials running at once (default: CPUs)")
    parser.add_argument("--cpus_per_trial", type=int, default=1)
    parser.add_argument("--output_dir", type=str, default=None, help="default: saved/hyper")
    parser.add_argument("--output_file", type=str, default=None,
                        help="also write RecBole's text export of every trial here (RecBole's flag)")
    parser.add_argument("--display_file", type=str, default=None,
                        help="also write an HTML plot of the valid score per trial here (RecBole's flag)")
    parser.add_argument("--tool", type=str, default="Ray",
                        help="Ray (default) or Hyperopt: RecBole's exhaustive search over choices, run on Ray Tune")
    parser.add_argument("--verbose", type=int, default=1, help="Ray Tune verbosity 0-3 (progress display)")
    return parser.parse_known_args(argv)


def hyper_value(text):
    """A fixed ``--key=value`` as the command line of run_recbole.py reads it (a Python literal, never
    executed; else the string), so that the best-config YAML holds the same typed values."""
    from recbole_ext.config import parse_value

    return parse_value(text)


def hyper_main(argv=None, prog=HYPER_PROG):
    """``hyper``: a parallel hyper-parameter search on Ray Tune."""
    from recbole_ext.cli import run_command

    return run_command(lambda args: hyper_body(args, prog), sys.argv[1:] if argv is None else argv, prog=prog)


def hyper_body(argv, prog=HYPER_PROG):
    args, rest = parse_hyper_args(argv, prog)
    fixed = {}
    for item in rest:
        if not (item.startswith("--") and "=" in item):
            print(f"error: arguments must look like --key=value; not understood: {item}", file=sys.stderr)
            return 2
        key, value = item[2:].split("=", 1)
        fixed[key] = hyper_value(value)
    tool = args.tool.lower()
    if tool not in TOOLS:
        raise ConfigError(f"--tool={args.tool}: one of Ray, Hyperopt (RecBole's two tools)")
    from recbole_ext.tune import (format_trials_table, parse_params_file, run_search, write_display_file,
                                  write_recbole_result)

    params_file = resolve_config_file(args.params_file, "--params_file")
    if tool == "hyperopt":  # RecBole's run_hyper.py: hyperopt's exhaustive search, every parameter a choice
        space = parse_params_file(params_file)
        other = [name for name, (kind, _) in space.items() if kind != "choice"]
        if other or args.max_trials is not None:
            raise ConfigError(
                "--tool=Hyperopt is RecBole's exhaustive search: every parameter must be a choice and "
                f"--max_trials cannot be set ({'not choices: ' + ', '.join(other) if other else '--max_trials given'}); "
                "use --tool=Ray to sample the other parameter types"
            )
    summary = run_search(
        args.model, args.dataset, params_file, config_file_list=config_file_list(args.config_files),
        config_dict=fixed, address=args.address, max_trials=args.max_trials, max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial, output_dir=args.output_dir, verbose=args.verbose,
    )
    print(f"\n{summary['model']} on {summary['dataset']}: {len(summary['trials'])} trials "
          f"({summary['search']} search), valid metric {summary['valid_metric']}")
    print(format_trials_table(summary))
    if args.output_file:
        print(f"RecBole's result export written to {write_recbole_result(summary, args.output_file)}")
    if args.display_file:
        print(f"plot of the trials written to {write_display_file(summary, args.display_file)}")
    if summary["best"] is None:
        print(f"error: every trial failed (see the table above; all trials: {summary['results_path']})",
              file=sys.stderr)
        return 1
    print(f"best config written to {summary['best_path']}\nall trials: {summary['results_path']}")
    return 0
