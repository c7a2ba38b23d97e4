"""Entry points a RecBole user expects, resolving recbole_ext names first.

``get_model`` / ``get_trainer`` mirror ``recbole.utils.get_model`` / ``get_trainer``;
``create_dataset`` / ``data_preparation`` mirror ``recbole.data``'s.
"""

from recbole_ext import registry
from recbole_ext.data.utils import create_dataset, data_preparation
from recbole_ext.trainer.trainer import compose_trainer


def get_model(model_name):
    """Model class of ``model_name`` (recbole_ext first, then RecBole); unknown → close matches."""
    return registry.get_model(model_name)


def get_trainer(model_type, model_name, config=None):
    """Trainer class for a run: the ``trainer`` config key, else the model's declared trainer,
    else ``<Model>Trainer`` (ours, then RecBole's), else RecBole's choice by model type — with
    recbole_ext's collector and re-ranking hook mixed in."""
    model_class = getattr(config, "model_class", None)  # resolved once, by the Config
    return compose_trainer(registry.get_trainer_class(model_type, model_name, config, model_class))


__all__ = ["get_model", "get_trainer", "create_dataset", "data_preparation"]
