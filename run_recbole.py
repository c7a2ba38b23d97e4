"""Train and evaluate a model the RecBole way, with recbole_ext's models, trainers and metrics.

    python run_recbole.py --model=BPR --dataset=ml-100k [--config_files="a.yaml b.yaml"] [--key=value ...]

Every other ``--key=value`` flag is configuration, exactly as with RecBole's own script. Prints
RecBole's best-valid / test lines and writes a JSON summary under ``saved/results/``.

A mistake in the input (configuration, data files, names) prints ``error: ...`` and exits with status 2;
``--debug`` (or ``RECBOLE_EXT_DEBUG=1``) shows the traceback instead. Ctrl-C exits with status 130 and
prints the last checkpoint and the command that resumes from it.

Several seeds (one run each; mean, sd and 95 % t-interval per metric; docs/seeds-and-frontiers.md):

    python run_recbole.py --model=BPR --dataset=ml-100k --seeds=2020,2021,2022 [--seeds_parallel=processes|ray] [--seeds_workers=N]

Multi-process training (torch.distributed DDP), RecBole's flags:

    python run_recbole.py --model=BPR --dataset=ml-100k --nproc=2            # one machine
    python run_recbole.py ... --nproc=2 --world_size=4 --ip=HOST0 --port=29500 --group_offset=0  # machine 0
    python run_recbole.py ... --nproc=2 --world_size=4 --ip=HOST0 --port=29500 --group_offset=2  # machine 1

``--dist_backend=gloo|nccl`` picks the backend (default NCCL on CUDA, Gloo on CPU). On one machine
without ``--port`` a free local port is chosen. See docs/distributed.md.
"""

import argparse
import sys


def parse_args(argv):
    # allow_abbrev=False: RecBole's --seed=... is configuration, not an abbreviation of --seeds
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--model", "-m", type=str, default=None, help="model name (recbole_ext or RecBole)")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated config files")
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
    from recbole_ext.errors import ConfigError
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


def main(argv=None):
    from recbole_ext.cli import run_command

    return run_command(_main, sys.argv[1:] if argv is None else argv, prog="python run_recbole.py")


def _main(argv):
    args, rest = parse_args(argv)
    unknown = [a for a in rest if not (a.startswith("--") and "=" in a)]
    if unknown:
        print(f"error: arguments must look like --key=value; not understood: {' '.join(unknown)}", file=sys.stderr)
        return 2
    from recbole_ext.quick_start import run_recbole

    config_files = args.config_files.strip().split(" ") if args.config_files else None
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
        f"{result['model']} on {result['dataset']}  (train {result['train_seconds']:.1f}s, "
        f"eval {result['eval_seconds']:.1f}s{procs})"
    ]
    lines.append(f"{'metric':<{width}}  {'valid':>8}  {'test':>8}")
    for name in names:
        v = valid.get(name)
        lines.append(f"{name:<{width}}  {'' if v is None else f'{v:8.4f}':>8}  {test.get(name, float('nan')):8.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
