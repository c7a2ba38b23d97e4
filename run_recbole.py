"""Train and evaluate a model the RecBole way, with recbole_ext's models, trainers and metrics.

    python run_recbole.py --model=BPR --dataset=ml-100k [--config_files="a.yaml b.yaml"] [--key=value ...]

A thin wrapper: the command lives in the package (``recbole_ext/commands.py``, edit it there) and runs the
same after ``pip install`` as ``python -m recbole_ext run ...`` from any directory. ``--help`` lists the
flags (several seeds, several processes; see docs/seeds-and-frontiers.md and docs/distributed.md).
"""

import sys

from recbole_ext.commands import (  # noqa: F401  (the script's names, as before the move)
    format_result_table,
    parse_run_args as parse_args,
    run_distributed,
    run_seeds_command,
)


def main(argv=None):
    from recbole_ext.commands import run_main

    return run_main(sys.argv[1:] if argv is None else argv, prog="python run_recbole.py")


if __name__ == "__main__":
    sys.exit(main())
