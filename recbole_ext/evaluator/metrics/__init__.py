"""recbole_ext metrics. Every module in this package is imported here; its metric classes register
themselves with ``@register_metric`` so that ``metrics: [...]`` in any config can name them."""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
