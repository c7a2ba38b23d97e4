"""Convert LightGCN / NGCF text splits into RecBole atomic files that keep the given split.

Two layouts are read:

* ``lines`` (Gowalla, Yelp2018, Amazon-book in LightGCN-PyTorch): one line per user,
  ``<user> <item> <item> ...`` separated by spaces (0-based ids);
* ``table`` (LightGCN-PyTorch's ``lastfm``: ``data1.txt`` / ``test1.txt``): ``<user>\\t<item>\\t<weight>``
  per interaction (1-based ids, CRLF line ends); the weight is kept as a ``weight:float`` column
  (not named ``rating``, so rating-aware models stay binary unless told otherwise).

The ids are written unchanged as RecBole tokens (RecBole remaps tokens itself). The result is
``<out_dir>/<name>/<name>.{train,valid,test}.inter``, loaded with
``benchmark_filename: [train, valid, test]`` (RecBole's pre-split mechanism, ``Dataset._load_inter_feat``).
The LightGCN splits have no validation part: the valid file is a *placeholder* holding only the
header, so that nothing is hidden from test-time history masking and no test data leaks into
validation. With an empty valid loader RecBole's ``Trainer.fit`` skips validation (a closed-form
model such as GF-CF needs none; trained models run their fixed number of epochs).

Command line::

    python -m recbole_ext.data.lightgcn_converter --train ../shared/datasets/gowalla/train.txt \\
        --test ../shared/datasets/gowalla/test.txt --name gowalla --out dataset
"""

import argparse
import os

from recbole_ext.errors import DatasetError, DatasetNotFoundError

SUFFIXES = ("train", "valid", "test")


def _parse_int(token, path, lineno):
    try:
        return int(token)
    except ValueError:
        raise DatasetError(
            f"{path}, line {lineno}: token {token!r} is not an integer id. LightGCN files hold integer user "
            "and item ids only; fix or remove that line"
        ) from None


def _parse_float(token, path, lineno):
    try:
        return float(token)
    except ValueError:
        raise DatasetError(
            f"{path}, line {lineno}: weight {token!r} is not a number; the table layout is "
            "'<user>\\t<item>\\t<weight>'"
        ) from None


def detect_layout(path):
    """``table`` when the first non-empty line has tabs, else ``lines``."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return "table" if "\t" in line else "lines"
    return "lines"


def read_lightgcn(path, layout="auto"):
    """Read one LightGCN file; return a list of ``(user, item, weight_or_None)`` in file order."""
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"LightGCN file not found: {path}")
    if layout == "auto":
        layout = detect_layout(path)
    if layout not in ("lines", "table"):
        raise DatasetError(f"unknown LightGCN layout '{layout}': use 'lines', 'table' or 'auto'")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            if layout == "lines":
                tokens = line.split()
                user = _parse_int(tokens[0], path, lineno)
                for token in tokens[1:]:
                    rows.append((user, _parse_int(token, path, lineno), None))
            else:
                tokens = line.split("\t") if "\t" in line else line.split()
                if len(tokens) not in (2, 3):
                    raise DatasetError(
                        f"{path}, line {lineno}: expected '<user>\\t<item>[\\t<weight>]', got {len(tokens)} fields"
                    )
                user = _parse_int(tokens[0], path, lineno)
                item = _parse_int(tokens[1], path, lineno)
                weight = _parse_float(tokens[2], path, lineno) if len(tokens) == 3 else None
                rows.append((user, item, weight))
    return rows


def _write_inter(path, rows, with_weight):
    header = "user_id:token\titem_id:token" + ("\tweight:float" if with_weight else "")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(header + "\n")
        if with_weight:
            f.writelines(f"{u}\t{i}\t{'' if w is None else repr(w)}\n" for u, i, w in rows)
        else:
            f.writelines(f"{u}\t{i}\n" for u, i, _ in rows)
    os.replace(tmp, path)


def convert(train, test, out_dir, name, layout="auto", valid=None):
    """Write ``<out_dir>/<name>/<name>.{train,valid,test}.inter``; return the config keys to load them.

    ``valid``: an optional LightGCN file for validation; by default the valid file is a header-only
    placeholder (see the module docstring).
    """
    parts = {"train": read_lightgcn(train, layout), "test": read_lightgcn(test, layout)}
    parts["valid"] = read_lightgcn(valid, layout) if valid else []
    with_weight = any(w is not None for rows in parts.values() for _, _, w in rows[:1])
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    for suffix in SUFFIXES:
        _write_inter(os.path.join(folder, f"{name}.{suffix}.inter"), parts[suffix], with_weight)
    load_inter = ["user_id", "item_id"] + (["weight"] if with_weight else [])
    return {
        "data_path": os.path.abspath(out_dir),
        "dataset": name,
        "benchmark_filename": list(SUFFIXES),
        "load_col": {"inter": load_inter},
        "counts": {k: len(v) for k, v in parts.items()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True, help="LightGCN train file (train.txt / data1.txt)")
    parser.add_argument("--test", required=True, help="LightGCN test file (test.txt / test1.txt)")
    parser.add_argument("--valid", default=None, help="optional validation file (default: header-only placeholder)")
    parser.add_argument("--name", required=True, help="dataset name (RecBole 'dataset' key)")
    parser.add_argument("--out", default="dataset", help="folder to write <name>/ into (RecBole 'data_path')")
    parser.add_argument("--layout", default="auto", choices=["auto", "lines", "table"])
    args = parser.parse_args(argv)
    info = convert(args.train, args.test, args.out, args.name, args.layout, args.valid)
    print(
        f"wrote {info['counts']} interactions to {os.path.join(info['data_path'], args.name)}; load with\n"
        f"  --dataset={args.name} --data_path={info['data_path']} "
        f"--benchmark_filename=\"['train','valid','test']\""
    )
    return info


if __name__ == "__main__":
    main()
