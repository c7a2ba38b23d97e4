"""RecBole dataset classes that check their atomic files and never download.

RecBole's ``Dataset._load_data`` tries to download a dataset it cannot find, and a malformed line
surfaces as a pandas parser error without the file or what was expected. These subclasses add a
check of every atomic file before RecBole reads it and turn a missing dataset into a clear error.
"""

import os

import numpy as np
import pandas as pd
import recbole.data.dataset as recbole_dataset
from recbole.utils import FeatureType

from recbole_ext.errors import DatasetError, DatasetNotFoundError

_TYPES = ", ".join(t.value for t in FeatureType)


def check_atomic_file(filepath, field_separator="\t", encoding="utf-8"):
    """Raise :class:`DatasetError` naming file, line and expectation for the first malformed line.

    Checks the header (``name:type`` with a RecBole feature type), the number of fields on every
    line, and that ``float`` columns hold numbers (or nothing).
    """
    with open(filepath, "r", encoding=encoding) as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DatasetError(f"{filepath}: the file is empty; expected a header line of 'name:type' fields")
    header = lines[0].rstrip("\r").split(field_separator)
    types = []
    for field in header:
        name, sep, ftype = field.partition(":")
        if not sep or not name:
            raise DatasetError(
                f"{filepath}, line 1: header field '{field}' is not 'name:type' "
                f"(fields separated by {field_separator!r}; types: {_TYPES})"
            )
        try:
            types.append(FeatureType(ftype))
        except ValueError:
            raise DatasetError(
                f"{filepath}, line 1: field '{name}' has unknown type '{ftype}'; expected one of {_TYPES}"
            ) from None
    expected = len(header)
    counts = np.fromiter((line.count(field_separator) + 1 for line in lines[1:]), dtype=np.int64, count=len(lines) - 1)
    blank = np.fromiter((not line.strip() for line in lines[1:]), dtype=bool, count=len(lines) - 1)
    bad = np.flatnonzero((counts != expected) & ~blank)
    if bad.size:
        row = int(bad[0])
        raise DatasetError(
            f"{filepath}, line {row + 2}: expected {expected} fields separated by {field_separator!r} "
            f"({', '.join(header)}), found {int(counts[row])}: {lines[row + 1][:200]!r}"
        )
    float_columns = [i for i, t in enumerate(types) if t == FeatureType.FLOAT]
    if float_columns and len(lines) > 1:
        body = [lines[i + 1] for i in np.flatnonzero(~blank)]
        rows = np.flatnonzero(~blank)
        table = pd.Series(body).str.split(field_separator, expand=True, regex=False)
        for column in float_columns:
            text = table[column].str.strip()
            values = pd.to_numeric(text, errors="coerce")
            wrong = np.flatnonzero(values.isna().to_numpy() & (text != "").to_numpy())
            if wrong.size:
                row = int(rows[wrong[0]])
                raise DatasetError(
                    f"{filepath}, line {row + 2}: field '{header[column].partition(':')[0]}' must be a number, "
                    f"found {text.iloc[wrong[0]]!r}"
                )


class AtomicFileCheckMixin:
    """Checks atomic files before loading; refuses to download."""

    def _load_data(self, token, dataset_path):
        names = self.config["benchmark_filename"] or [None]
        expected = [
            os.path.join(dataset_path, f"{token}.inter" if n is None else f"{token}.{n}.inter") for n in names
        ]
        missing = [p for p in expected if not os.path.isfile(p)]
        if missing:
            raise DatasetNotFoundError(
                f"no atomic files for dataset '{token}': searched {', '.join(missing)}. "
                f"Put '{token}.inter' (and optional .user/.item) under {os.path.join('dataset', token)}/ "
                "or set data_path to the folder that holds the dataset's folder"
            )
        super()._load_data(token, dataset_path)

    def _download(self):
        raise DatasetNotFoundError(
            f"dataset '{self.dataset_name}' is not available locally at {self.dataset_path}; "
            "recbole_ext never downloads data — convert your data to atomic files there"
        )

    def _load_feat(self, filepath, source):
        check_atomic_file(filepath, self.config["field_separator"], self.config["encoding"])
        return super()._load_feat(filepath, source)


_CHECKED = {}


def checked_dataset_class(base):
    """``base`` (a RecBole dataset class) with :class:`AtomicFileCheckMixin` in front (cached)."""
    if issubclass(base, AtomicFileCheckMixin):
        return base
    if base not in _CHECKED:
        _CHECKED[base] = type(base.__name__, (AtomicFileCheckMixin, base), {"__module__": __name__})
    return _CHECKED[base]


Dataset = checked_dataset_class(recbole_dataset.Dataset)
SequentialDataset = checked_dataset_class(recbole_dataset.SequentialDataset)
KnowledgeBasedDataset = checked_dataset_class(recbole_dataset.KnowledgeBasedDataset)
