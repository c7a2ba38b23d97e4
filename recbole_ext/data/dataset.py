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


def _parse_header(filepath, header_line, field_separator):
    header = header_line.rstrip("\r").split(field_separator)
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
    return header, types


def _line_spans(raw):
    """Start and end byte offsets of every line (without the newline)."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    if raw and not raw.endswith(b"\n"):
        ends = np.append(ends, len(buf))
    starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.zeros(0, dtype=np.int64)
    return buf, starts, ends


def check_atomic_file(filepath, field_separator="\t", encoding="utf-8"):
    """Raise :class:`DatasetError` naming file, line and expectation for the first malformed line.

    Checks the header (``name:type`` with a RecBole feature type), the number of fields on every
    line, and that ``float`` columns hold numbers (or nothing). Vectorised over the file's bytes:
    the check costs a fraction of RecBole's own loading.
    """
    encoding = encoding or "utf-8"
    with open(filepath, "rb") as f:
        raw = f.read()
    buf, starts, ends = _line_spans(raw)
    if len(starts) == 0 or ends[0] == starts[0]:
        raise DatasetError(f"{filepath}: the file is empty; expected a header line of 'name:type' fields")
    header, types = _parse_header(filepath, raw[starts[0] : ends[0]].decode(encoding), field_separator)
    expected = len(header)
    sep = field_separator.encode(encoding)
    starts, ends = starts[1:], ends[1:]
    if len(sep) == 1:
        positions = np.flatnonzero(buf == sep[0])
        counts = np.searchsorted(positions, ends) - np.searchsorted(positions, starts) + 1
    else:
        counts = np.array([raw[a:b].count(sep) + 1 for a, b in zip(starts, ends)], dtype=np.int64)
    lengths = ends - starts
    blank = (lengths == 0) | ((lengths == 1) & (buf[np.maximum(ends - 1, 0)] == ord("\r")))
    bad = np.flatnonzero((counts != expected) & ~blank)
    if bad.size:
        row = int(bad[0])
        line = raw[starts[row] : ends[row]].decode(encoding, errors="replace")
        raise DatasetError(
            f"{filepath}, line {row + 2}: expected {expected} fields separated by {field_separator!r} "
            f"({', '.join(header)}), found {int(counts[row])}: {line[:200]!r}"
        )
    float_columns = [i for i, t in enumerate(types) if t == FeatureType.FLOAT]
    if not float_columns or not (~blank).any():
        return
    read = dict(
        sep=field_separator,
        usecols=float_columns,
        skip_blank_lines=True,
        encoding=encoding,
        engine="c" if len(sep) == 1 else "python",
    )
    try:
        pd.read_csv(filepath, dtype=np.float64, **read)
        return  # every float cell parses (blank cells are NaN, which RecBole fills)
    except ValueError:
        pass  # locate the offending cell below
    table = pd.read_csv(filepath, dtype=str, keep_default_na=False, **read)
    rows = np.flatnonzero(~blank)  # table row r is file line rows[r] + 2
    for column, name in zip(float_columns, table.columns):
        text = table[name]
        values = pd.to_numeric(text, errors="coerce")
        suspects = np.flatnonzero(values.isna().to_numpy() & (text != "").to_numpy())
        # only the few unparsed cells are stripped and retried (blank or padded numbers are fine)
        retry = pd.to_numeric(text.iloc[suspects].str.strip().replace("", "0"), errors="coerce")
        wrong = suspects[retry.isna().to_numpy()]
        if wrong.size:
            raise DatasetError(
                f"{filepath}, line {int(rows[wrong[0]]) + 2}: field '{header[column].partition(':')[0]}' "
                f"must be a number, found {text.iloc[wrong[0]]!r}"
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
