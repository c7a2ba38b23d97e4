"""RecBole dataset classes that check their atomic files, never download, and say what they dropped.

RecBole's ``Dataset._load_data`` tries to download a dataset it cannot find, and a malformed line
surfaces as a pandas parser error without the file or what was expected. These subclasses add a
check of every atomic file before RecBole reads it and turn a missing dataset into a clear error.

They also make RecBole's silent data changes loud (one warning each):

* duplicate interactions (same user, item and timestamp) — RecBole keeps them unless ``rm_dup_inter``;
* interactions removed by RecBole's filters, counted per filter in ``dataset.dropped_interactions``;
* users/items of the ``.inter`` file without a ``.user``/``.item`` row (``dataset.missing_feature_rows``):
  RecBole drops their interactions (``filter_inter_by_user_or_item``) or fills their side information
  with the column mean / ``[PAD]``. :func:`require_side_info` refuses such a dataset where a method
  needs every item's side information.
"""

import os
from collections import namedtuple

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


#: ``tokens``: users/items of the ``.inter`` file without a row in the ``.user``/``.item`` file;
#: ``interactions``: how many interactions name them (before RecBole's filters).
MissingRows = namedtuple("MissingRows", "tokens interactions")

_EXAMPLES = 3


def _examples(values):
    values = list(values)
    more = ", ..." if len(values) > _EXAMPLES else ""
    return ", ".join(str(v) for v in values[:_EXAMPLES]) + more


def require_side_info(dataset, source, needed_by):
    """Raise :class:`DatasetError` when some users/items (``source``: ``"user"`` / ``"item"``) of the
    interactions have no row in the ``.user``/``.item`` file: ``needed_by`` (a method or metric input) needs
    the side information of every one of them. Datasets not built by recbole_ext carry no record: no check."""
    missing = getattr(dataset, "missing_feature_rows", {}).get(source)
    if not missing:
        return
    name = dataset.dataset_name
    dropped = dataset.dropped_interactions.get("filter_inter_by_user_or_item")
    fate = (
        f"RecBole dropped their interactions (filter_inter_by_user_or_item: {dropped} removed)"
        if dropped
        else "RecBole kept their interactions and filled their side information with each float column's "
        "mean and [PAD] for tokens"
    )
    raise DatasetError(
        f"{needed_by} needs the .{source} row of every {source}, but {len(missing.tokens)} {source}s of "
        f"{name}'s interactions ({missing.interactions} interactions; e.g. {_examples(missing.tokens)}) have no "
        f"row in {name}.{source}: {fate}. Add rows for them to {name}.{source}, or remove their interactions "
        f"from the .inter file(s)"
    )


class AtomicFileCheckMixin:
    """Checks atomic files before loading; refuses to download; reports duplicate and dropped interactions.

    ``dropped_interactions``: ``{filter: interactions it removed}`` (filters that removed some);
    ``missing_feature_rows``: ``{"user"|"item": MissingRows}`` (only sources with missing rows).
    """

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
        sizes = self.file_size_list if names[0] is not None else [len(self.inter_feat)]
        if sizes[0] == 0:  # benchmark files: the first (training) one; the others may be placeholders
            raise DatasetError(
                f"{expected[0]}: the file has a header but no data rows; add one interaction per line below "
                "the header"
            )

    def _download(self):
        raise DatasetNotFoundError(
            f"dataset '{self.dataset_name}' is not available locally at {self.dataset_path}; "
            "recbole_ext never downloads data — convert your data to atomic files there"
        )

    def _load_feat(self, filepath, source):
        check_atomic_file(filepath, self.config["field_separator"], self.config["encoding"])
        return super()._load_feat(filepath, source)

    # --- what RecBole's processing changes, said out loud ------------------------------------------
    def _data_processing(self):
        self.dropped_interactions = {}
        self._loaded_interactions = len(self.inter_feat)
        self.missing_feature_rows = self._missing_feature_rows()
        self._report_duplicates()
        super()._data_processing()
        self._report_dropped()

    def _missing_feature_rows(self):
        found = {}
        for source, field in (("user", self.uid_field), ("item", self.iid_field)):
            feat = getattr(self, f"{source}_feat")
            if feat is None or field not in self.inter_feat or field not in feat:
                continue
            column = self.inter_feat[field]
            absent = column.notna() & ~column.isin(feat[field])
            if absent.any():
                found[source] = MissingRows(tuple(pd.unique(column[absent])), int(absent.sum()))
        return found

    def _report_duplicates(self):
        fields = (self.uid_field, self.iid_field, self.time_field)
        columns = [f for f in fields if f is not None and f in self.inter_feat]
        if self.uid_field not in columns or self.iid_field not in columns:
            return
        repeated = self.inter_feat.duplicated(subset=columns)
        count = int(repeated.sum())
        benchmark = bool(self.benchmark_filename_list)
        if not count or (self.config["rm_dup_inter"] is not None and not benchmark):
            return  # none, or RecBole drops them (counted with the other filters)
        rows = self.inter_feat.loc[repeated, columns].head(_EXAMPLES + 1).itertuples(index=False)
        examples = _examples("(" + ", ".join(str(v) for v in row) + ")" for row in rows)
        if benchmark:
            fix = ("remove them from the benchmark files (RecBole applies no filter, rm_dup_inter included, "
                   "when benchmark_filename is set)")
        else:
            fix = "set rm_dup_inter: first to drop them (RecBole keeps the first interaction of each user-item pair"
            fix += ", also of a pair repeated at another time)" if self.time_field in columns else ")"
        self.logger.warning(
            f"dataset '{self.dataset_name}': {count} duplicate interactions (same {', '.join(columns)} as an "
            f"earlier row; e.g. {examples}) — each counts again in training and evaluation; {fix}"
        )

    def _count_dropped(self, name, step):
        before = len(self.inter_feat)
        step()
        if len(self.inter_feat) < before:
            self.dropped_interactions[name] = self.dropped_interactions.get(name, 0) + before - len(self.inter_feat)

    def _filter_nan_user_or_item(self):
        self._count_dropped("missing user/item id", super()._filter_nan_user_or_item)

    def _remove_duplication(self):
        self._count_dropped("rm_dup_inter", super()._remove_duplication)

    def _filter_by_field_value(self):
        self._count_dropped("val_interval", super()._filter_by_field_value)

    def _filter_inter_by_user_or_item(self):
        self._count_dropped("filter_inter_by_user_or_item", super()._filter_inter_by_user_or_item)

    def _filter_by_inter_num(self):
        self._count_dropped("user_inter_num_interval/item_inter_num_interval", super()._filter_by_inter_num)

    def _dropped_text(self):
        return ", ".join(f"{count} by {name}" for name, count in self.dropped_interactions.items())

    def _reset_index(self):
        for name in self.feat_name_list:
            if getattr(self, name).empty:
                raise DatasetError(
                    f"dataset '{self.dataset_name}': RecBole's filters removed every row of {name} "
                    f"({self._dropped_text() or 'no interaction filter removed any'}): loosen val_interval, "
                    "user_inter_num_interval/item_inter_num_interval or the .user/.item files"
                )
        super()._reset_index()

    def _report_dropped(self):
        parts = []
        if self.dropped_interactions:
            total = sum(self.dropped_interactions.values())
            parts.append(
                f"RecBole's filters removed {total} of {self._loaded_interactions} interactions "
                f"({self._dropped_text()}); results are for the remaining {len(self.inter_feat)}"
            )
        for source, missing in self.missing_feature_rows.items():
            parts.append(
                f"{len(missing.tokens)} {source}s of the interactions ({missing.interactions} interactions; "
                f"e.g. {_examples(missing.tokens)}) have no row in {self.dataset_name}.{source}"
                + ("" if "filter_inter_by_user_or_item" in self.dropped_interactions else
                   f" (their {source} fields hold RecBole's fill values: column mean / [PAD])")
            )
        if parts:
            self.logger.warning(f"dataset '{self.dataset_name}': " + "; ".join(parts) + ".")


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
