"""recbole_ext — models, trainers and metrics for RecBole 1.2.1, without forking it.

Importing the package applies the compatibility patches (:mod:`recbole_ext.compat`) and registers
our metrics, before any ``Config`` is built.
"""

__version__ = "0.1.0"

try:  # RecBole is installed beside recbole_ext, without its declared dependencies (docs/install.md)
    import recbole as _recbole  # noqa: F401
except ModuleNotFoundError as _err:
    if _err.name != "recbole":
        raise
    raise ModuleNotFoundError(
        "recbole_ext needs RecBole 1.2.1, installed without its declared dependencies (they pin ray<=2.6.3, "
        "which fails on NumPy 2): pip install --no-deps recbole==1.2.1   (see docs/install.md)", name="recbole"
    ) from None

from recbole_ext import compat as _compat  # noqa: E402

_compat.apply()

from recbole_ext import evaluator  # noqa: E402,F401  (metric registration)
from recbole_ext.config import Config  # noqa: E402
from recbole_ext.utils import create_dataset, data_preparation, get_model, get_trainer  # noqa: E402

__all__ = ["Config", "create_dataset", "data_preparation", "get_model", "get_trainer", "__version__"]
