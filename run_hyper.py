"""Parallel hyper-parameter search on Ray Tune, RecBole's params-file format.

    python run_hyper.py --model=BPR --dataset=ml-100k --params_file=hyper.test \
        [--config_files="a.yaml"] [--address=HOST:6379] [--max_trials=N] [--max_concurrent=N] \
        [--cpus_per_trial=1] [--output_dir=saved/hyper] [--key=value ...]

Needs Ray (``pip install -r requirements-tune.txt``). Starts a local Ray instance (stopped at the end)
unless ``--address`` names a running cluster (every node needs recbole_ext installed). Every other
``--key=value`` is fixed configuration for all trials. Prints Tune's progress, then a results table
(best first), and writes the best configuration (``*-best.yaml``, usable as --config_files) and all
trials (``*-results.json``) under ``saved/hyper/``.

A mistake in the input prints ``error: ...`` and exits with status 2; ``--debug`` (or
``RECBOLE_EXT_DEBUG=1``) shows the traceback instead.
"""

import argparse
import sys


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", type=str, required=True)
    parser.add_argument("--dataset", "-d", type=str, required=True)
    parser.add_argument("--params_file", type=str, required=True, help="RecBole hyper-parameter file")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated config files")
    parser.add_argument("--address", type=str, default=None, help="Ray cluster address (default: local Ray)")
    parser.add_argument("--max_trials", type=int, default=None,
                        help="trials to sample (default: the full grid when all parameters are choices, else 10)")
    parser.add_argument("--max_concurrent", type=int, default=None, help="trials running at once (default: CPUs)")
    parser.add_argument("--cpus_per_trial", type=int, default=1)
    parser.add_argument("--output_dir", type=str, default=None, help="default: saved/hyper")
    parser.add_argument("--verbose", type=int, default=1, help="Ray Tune verbosity 0-3 (progress display)")
    return parser.parse_known_args(argv)


def _value(text):
    """A fixed ``--key=value`` as the command line of run_recbole.py reads it (a Python literal, never
    executed; else the string), so that the best-config YAML holds the same typed values."""
    from recbole_ext.config import parse_value

    return parse_value(text)


def main(argv=None):
    from recbole_ext.cli import run_command

    return run_command(_main, sys.argv[1:] if argv is None else argv, prog="python run_hyper.py")


def _main(argv):
    args, rest = parse_args(argv)
    fixed = {}
    for item in rest:
        if not (item.startswith("--") and "=" in item):
            print(f"error: arguments must look like --key=value; not understood: {item}", file=sys.stderr)
            return 2
        key, value = item[2:].split("=", 1)
        fixed[key] = _value(value)
    from recbole_ext.tune import format_trials_table, run_search

    summary = run_search(
        args.model, args.dataset, args.params_file,
        config_file_list=args.config_files.split() if args.config_files else None, config_dict=fixed,
        address=args.address, max_trials=args.max_trials, max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial, output_dir=args.output_dir, verbose=args.verbose,
    )
    print(f"\n{summary['model']} on {summary['dataset']}: {len(summary['trials'])} trials "
          f"({summary['search']} search), valid metric {summary['valid_metric']}")
    print(format_trials_table(summary))
    if summary["best"] is None:
        print("error: every trial failed (see the table)", file=sys.stderr)
        return 1
    print(f"best config written to {summary['best_path']}\nall trials: {summary['results_path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
