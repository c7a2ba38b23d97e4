"""recbole_ext evaluation: metric plug-ins, the extended collector and their registries."""

from recbole_ext.evaluator.register import EXT_METRICS, register_metric
from recbole_ext.evaluator.collector import (
    ExtCollector,
    register_batch_provider,
    register_data_provider,
)
from recbole_ext.evaluator import metrics  # noqa: F401  (registers our metrics)

__all__ = [
    "EXT_METRICS",
    "ExtCollector",
    "register_metric",
    "register_batch_provider",
    "register_data_provider",
]
