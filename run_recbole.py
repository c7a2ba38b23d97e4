"""Train and evaluate a model the RecBole way, with recbole_ext's models, trainers and metrics.

    python run_recbole.py --model=BPR --dataset=ml-100k [--config_files="a.yaml b.yaml"] [--key=value ...]

Every other ``--key=value`` flag is configuration, exactly as with RecBole's own script. Prints
RecBole's best-valid / test lines and writes a JSON summary under ``saved/results/``.
"""

import argparse
import sys


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", type=str, default=None, help="model name (recbole_ext or RecBole)")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated config files")
    return parser.parse_known_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, rest = parse_args(argv)
    unknown = [a for a in rest if not (a.startswith("--") and "=" in a)]
    if unknown:
        print(f"error: arguments must look like --key=value; not understood: {' '.join(unknown)}", file=sys.stderr)
        return 2
    import recbole_ext  # noqa: F401  (applies compatibility patches)
    from recbole_ext.errors import RecBoleExtError
    from recbole_ext.quick_start import run_recbole

    config_files = args.config_files.strip().split(" ") if args.config_files else None
    try:
        result = run_recbole(
            model=args.model, dataset=args.dataset, config_file_list=config_files, cmd_args=rest
        )
    except (RecBoleExtError, FileNotFoundError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_result_table(result))
    if result.get("summary_path"):
        print(f"summary written to {result['summary_path']}")
    return 0


def format_result_table(result):
    valid = result["best_valid_result"] or {}
    test = result["test_result"] or {}
    names = list(test) or list(valid)
    width = max([len(n) for n in names] + [6])
    lines = [f"{result['model']} on {result['dataset']}  (train {result['train_seconds']:.1f}s, eval {result['eval_seconds']:.1f}s)"]
    lines.append(f"{'metric':<{width}}  {'valid':>8}  {'test':>8}")
    for name in names:
        v = valid.get(name)
        lines.append(f"{name:<{width}}  {'' if v is None else f'{v:8.4f}':>8}  {test.get(name, float('nan')):8.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
