"""The error boundary of the command lines (``run_recbole.py``, ``run_hyper.py``).

:func:`run_command` calls a script's body and turns

* an error caused by input — recbole_ext's own errors, RecBole's ``ValueError`` / ``KeyError`` /
  ``TypeError`` / ``SyntaxError`` / ``NotImplementedError`` raised while building the configuration,
  dataset or model, malformed YAML, a missing or unwritable file or folder — into ``error: <what>``
  (plus, for errors not written by recbole_ext, one line on how to go on) on stderr and exit status 2;
* Ctrl-C into one line (the last checkpoint and the command that resumes from it) and exit status 130.

An error raised while training or evaluating runs (a bug, unless it is one of ours) keeps its traceback
(exit status 1). ``--debug`` (removed from the arguments before the script sees them) or
``RECBOLE_EXT_DEBUG=1`` shows the traceback of every error.
"""

import os
import shlex
import sys

import yaml

from recbole_ext.errors import ConfigError, RecBoleExtError

DEBUG_FLAG = "--debug"
DEBUG_ENV = "RECBOLE_EXT_DEBUG"
EXIT_INPUT_ERROR = 2
EXIT_INTERRUPTED = 130

#: input or environment errors wherever they are raised
ALWAYS_INPUT = (RecBoleExtError, yaml.YAMLError, OSError)
#: what RecBole raises on a bad value; input errors unless raised while a trainer runs
BUILD_ERRORS = (ValueError, KeyError, TypeError, SyntaxError, NotImplementedError)
_RUNNING = {"fit", "evaluate", "_train_epoch", "_valid_epoch"}
_TRAINER_MODULES = ("recbole.trainer", "recbole_ext.trainer")


def debug_requested(argv):
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run_command(body, argv, prog):
    """Return ``body(args)`` (``None`` counts as 0), ``args`` being ``argv`` without ``--debug``; input errors
    return 2 and Ctrl-C returns 130, each after a short message on stderr (see the module docstring).
    ``prog`` is the command as a user types it (``python run_recbole.py``), for the resume line."""
    debug = debug_requested(argv)
    args = [a for a in argv if a != DEBUG_FLAG]
    try:
        check_repeated_flags(args)
        code = body(args)
    except KeyboardInterrupt as err:
        if debug:
            raise
        print(interrupted_message(err, prog, args), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        if debug or not is_input_error(err):
            raise
        print(error_message(err), file=sys.stderr)
        return EXIT_INPUT_ERROR
    return 0 if code is None else code


def check_repeated_flags(argv):
    """Refuse a ``--key`` given twice with different values (argparse and RecBole would keep one silently
    or fail with a traceback)."""
    seen = {}
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            value = argv[i + 1]
        if key in seen and seen[key] != value:
            raise ConfigError(f"--{key} is given twice with different values ({seen[key]!r}, {value!r}): keep one")
        seen[key] = value


def is_input_error(err):
    if isinstance(err, ALWAYS_INPUT):
        return True
    return isinstance(err, BUILD_ERRORS) and not _raised_while_running(err)


def _frames(err):
    tb = err.__traceback__
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _raised_while_running(err):
    """True when a trainer's fit/evaluate is on the traceback: the data and model were built by then."""
    return any(
        frame.f_code.co_name in _RUNNING and frame.f_globals.get("__name__", "").startswith(_TRAINER_MODULES)
        for frame in _frames(err)
    )


def _one_line(text):
    return " ".join(str(text).split())


def error_message(err):
    """``error: <what>`` plus, for an error recbole_ext did not write, a line on how to go on."""
    if isinstance(err, RecBoleExtError):
        return f"error: {_one_line(err)}"
    if isinstance(err, yaml.YAMLError):
        what = f"malformed YAML: {_one_line(err)}"
        fix = "fix the line shown: config files are YAML mappings of 'key: value' lines"
    elif isinstance(err, PermissionError):
        what = f"permission denied: {err.filename}"
        fix = "make it writable, or point the output (checkpoint_dir, results_dir, --output_dir) elsewhere"
    elif isinstance(err, FileNotFoundError):
        what = f"file not found: {err.filename}"
        fix = f"check the path (relative paths start at {os.getcwd()})"
    elif isinstance(err, OSError):
        what = f"{err.strerror or _one_line(err)}" + (f": {err.filename}" if err.filename else "")
        fix = "check the file or folder named (free space, permissions)"
    else:
        origin = _origin(err)
        detail = f"key {err.args[0]!r} not found" if isinstance(err, KeyError) and err.args else _one_line(err)
        what = f"{detail or 'invalid value'} ({type(err).__name__} in {origin})"
        fix = f"raised while building the {_stage(origin)}: check the value or file it names"
    return f"error: {what}\n  {fix}; {DEBUG_FLAG} (or {DEBUG_ENV}=1) shows the traceback"


_STAGES = {"config": "configuration", "data": "dataset", "model": "model"}
_ANY_STAGE = "configuration, dataset or model"


def _stage(origin):
    parts = origin.split(".")
    return _STAGES.get(parts[1] if len(parts) > 1 else "", _ANY_STAGE)


def _origin(err):
    """The module of the innermost RecBole / recbole_ext frame (else the innermost frame)."""
    names = [frame.f_globals.get("__name__", "?") for frame in _frames(err)]
    ours = [n for n in names if n.split(".")[0] in ("recbole", "recbole_ext")]
    return (ours or names or ["?"])[-1]


def interrupted_message(err, prog, args):
    """One line: interrupted, the last checkpoint and the command that resumes from it (when there is one)."""
    checkpoint = getattr(err, "checkpoint", None)
    if not checkpoint:
        return "interrupted (Ctrl-C); no checkpoint was written"
    resume = [a for a in args if not a.startswith("--resume_checkpoint=")] + [f"--resume_checkpoint={checkpoint}"]
    return f"interrupted (Ctrl-C); last checkpoint: {checkpoint}; resume with: {prog} {shlex.join(resume)}"
