"""Reading configuration values without executing anything (layer 0): a YAML loader without Python tags
and a literal-only parser for the strings RecBole would ``eval``. Used by recbole_ext's ``Config`` and,
through ``compat`` (C17), by RecBole's own ``Config``."""

import ast
import re

import yaml


class SafeYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no ``!!python/...`` tags) with RecBole's float resolver, so that ``1e-3`` is
    a float as in RecBole. A subclass: the global ``yaml.SafeLoader`` / ``FullLoader`` are left alone."""


SafeYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+][0-9]+)?
            |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)

_VALUE_TYPES = (str, int, float, list, tuple, dict, bool)


def parse_value(text):
    """A configuration string (command line, ``config_dict``, checkpoint, params file) as a value, without
    executing anything: a Python literal (number, list, tuple, dict, ``None``, ``True``/``False``, quoted
    string) through ``ast.literal_eval``, then RecBole's words ``true``/``false``, else the string itself.
    Non-strings are returned unchanged."""
    if not isinstance(text, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return {"true": True, "false": False}.get(text.strip().lower(), text)
    return value if value is None or isinstance(value, _VALUE_TYPES) else text
