"""Parallel hyper-parameter search on Ray Tune, RecBole's params-file format and flags.

    python run_hyper.py --model=BPR --dataset=ml-100k --params_file=hyper.test [--config_files="a.yaml"] \
        [--max_trials=N] [--max_concurrent=N] [--output_file=F] [--display_file=F.html] [--key=value ...]

A thin wrapper: the command lives in the package (``recbole_ext/commands.py``, edit it there) and runs the
same after ``pip install`` as ``python -m recbole_ext hyper ...`` from any directory. ``--help`` lists the
flags. Needs Ray (``pip install -r requirements-tune.txt``; docs/install.md).
"""

import sys

from recbole_ext.commands import hyper_value as _value  # noqa: F401  (the script's names, as before the move)
from recbole_ext.commands import parse_hyper_args as parse_args  # noqa: F401


def main(argv=None):
    from recbole_ext.commands import hyper_main

    return hyper_main(sys.argv[1:] if argv is None else argv, prog="python run_hyper.py")


if __name__ == "__main__":
    sys.exit(main())
