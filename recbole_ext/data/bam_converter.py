"""Convert BaM's data files into RecBole atomic files.

BaM (snudatalab/BaM, ``src/utils.py: data_partition``) reads one extension-less text file per dataset:
one ``user_id item_id`` pair per line, single-space separated, 1-based ids, and each user's lines in
chronological order (a user's lines need not be contiguous). Some versions carry an optional third
token (an int or ``none``), parsed and ignored. The files have no timestamp, while RecBole's
sequential split orders by time, so the converter writes the line number as ``timestamp:float``:
order-preserving within every user, which is all the leave-one-out split uses.

    python -m recbole_ext.data.bam_converter data/books dataset/ --name books

writes ``dataset/books/books.inter`` (``user_id:token item_id:token timestamp:float``); then
``--dataset=books --data_path=dataset/`` with ``properties/bam_ml-100k.yaml``'s evaluation settings.
"""

import argparse
import os

import numpy as np
import pandas as pd

from recbole_ext.errors import DatasetError, DatasetNotFoundError
from recbole_ext.io import atomic_write


def read_bam_file(path):
    """Read a BaM data file into a DataFrame (``user``, ``item``, ``order``), validating every line."""
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"BaM data file '{path}' does not exist; pass the path of e.g. data/books")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines()
    tokens = [line.split() for line in lines]
    widths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    bad = np.flatnonzero((widths != 0) & ((widths < 2) | (widths > 3)))
    if bad.size:
        i = int(bad[0])
        raise DatasetError(
            f"{path}:{i + 1}: expected 'user_id item_id' (optionally a third token), got {lines[i]!r}"
        )
    keep = np.flatnonzero(widths > 0)
    if keep.size == 0:
        raise DatasetError(f"{path}: no 'user_id item_id' lines found")
    rows = [tokens[i][:2] for i in keep]
    frame = pd.DataFrame(rows, columns=["user", "item"])
    for col in ("user", "item"):
        values = pd.to_numeric(frame[col], errors="coerce")
        wrong = values.isna().to_numpy() | (values.fillna(0).to_numpy() < 1)
        if wrong.any():
            i = int(keep[np.flatnonzero(wrong)[0]])
            raise DatasetError(f"{path}:{i + 1}: {col} id must be an integer >= 1 (1-based ids), got {lines[i]!r}")
        frame[col] = values.astype(np.int64)
    frame["order"] = keep.astype(np.float64)  # line number: chronological within each user
    return frame


def convert(path, out_dir, name=None):
    """Write ``<out_dir>/<name>/<name>.inter``; return ``{data_path, dataset, inter_file, users, items, interactions}``."""
    name = name or os.path.basename(os.path.normpath(path))
    frame = read_bam_file(path)
    inter_file = os.path.join(out_dir, name, f"{name}.inter")
    out = pd.DataFrame(
        {"user_id:token": frame["user"], "item_id:token": frame["item"], "timestamp:float": frame["order"]}
    )
    atomic_write(inter_file, lambda f: out.to_csv(f, sep="\t", index=False, float_format="%.0f"), mode="w")
    return {
        "data_path": os.path.abspath(out_dir),
        "dataset": name,
        "inter_file": inter_file,
        "users": int(frame["user"].nunique()),
        "items": int(frame["item"].nunique()),
        "interactions": len(frame),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="BaM data file (one 'user item' pair per line, chronological per user)")
    parser.add_argument("out_dir", help="folder that receives <name>/<name>.inter (RecBole's data_path)")
    parser.add_argument("--name", default=None, help="dataset name (default: the file's name)")
    args = parser.parse_args(argv)
    info = convert(args.path, args.out_dir, args.name)
    print(
        f"wrote {info['inter_file']}: {info['users']} users, {info['items']} items, "
        f"{info['interactions']} interactions; use --dataset={info['dataset']} --data_path={info['data_path']}"
    )


if __name__ == "__main__":
    main()
