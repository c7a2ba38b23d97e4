"""recbole_ext — models, trainers and metrics for RecBole 1.2.1, without forking it.

Importing the package applies the compatibility patches (:mod:`recbole_ext.compat`) and registers
our metrics, before any ``Config`` is built.
"""

__version__ = "0.1.0"

from recbole_ext import compat as _compat

_compat.apply()

from recbole_ext import evaluator  # noqa: E402,F401  (metric registration)
from recbole_ext.config import Config  # noqa: E402
from recbole_ext.utils import create_dataset, data_preparation, get_model, get_trainer  # noqa: E402

__all__ = ["Config", "create_dataset", "data_preparation", "get_model", "get_trainer", "__version__"]
