"""recbole_ext data: checked dataset classes, ``create_dataset``, ``data_preparation``, converters."""

from recbole_ext.data.dataset import (
    AtomicFileCheckMixin,
    Dataset,
    KnowledgeBasedDataset,
    SequentialDataset,
    check_atomic_file,
    checked_dataset_class,
)
from recbole_ext.data.utils import create_dataset, data_preparation

__all__ = [
    "AtomicFileCheckMixin",
    "Dataset",
    "SequentialDataset",
    "KnowledgeBasedDataset",
    "check_atomic_file",
    "checked_dataset_class",
    "create_dataset",
    "data_preparation",
]
