"""PeterRec data: pretraining dataset classes and converters for the fine-tuning (target) tasks.

Pretraining (``NextItNetPDataset`` / ``GRecDataset``)
    RecBole's sequential dataset augments every prefix of every user as one example. PeterRec's backbones are trained
    with teacher forcing over whole rows, so that would count each transition up to ``MAX_ITEM_LIST_LENGTH`` times.
    ``pretrain_stride`` (default ``~`` = ``MAX_ITEM_LIST_LENGTH``) keeps, per user, only the training prefixes that
    end ``0, s, 2s, ...`` interactions before the user's last training interaction: with ``s = MAX_ITEM_LIST_LENGTH``
    the kept rows are non-overlapping windows covering every training transition once (the original: one row per
    sequence). ``pretrain_stride: 1`` keeps RecBole's full augmentation. Validation / test (leave-one-out) unchanged.

Fine-tuning task layout (a RecBole *general* dataset ``<name>``)
    * ``<name>.inter``: ``user_id:token  item_id:token`` — one line per (user, target) example; ``item_id`` is the
      *target* vocabulary (an attribute class or a target-domain item);
    * ``<name>.user``: ``user_id:token  source_seq:token_seq`` — the user's source-domain behaviour, oldest first,
      as tokens of the *pretraining* dataset's item vocabulary (PeterRec maps them onto the backbone's vocabulary and
      raises ``CheckpointError`` when a token is unknown to it).

Converters (each writes a folder under ``out_root``; command line: ``python -m recbole_ext.data.peterrec_data``):

* :func:`write_attribute_task` — ml-100k user attributes: ``gender`` (M / F), ``age`` (bands ``<18, 18-24, 25-34,
  35-44, 45-49, 50-55, 56+``, the MovieLens-1M bands), ``occupation`` (21 classes). Source = the user's ml-100k
  ratings sorted by time (ties by item id), last ``max_source_len`` items. One example per user. The split is
  done by RecBole on examples (``eval_args: {split: {RS: [...]}, group_by: ~, order: RO}``: random, like the
  original's permutation of examples); the properties files use 70 / 10 / 20.
* :func:`write_coldrec_task` — cold-start item transfer: items having any of ``target_genres`` form the target
  domain; all other ratings form the source dataset ``<prefix>-src`` (a sequential dataset to pretrain on); each
  user with at least one target-domain rating gets up to ``max_targets`` of their earliest target-domain items as
  examples (cold users: few target interactions) and their last ``max_source_len`` source items as ``source_seq``.
* :func:`finetune_file_to_atomic` / :func:`atomic_to_finetune_text` — the original layout
  ``source_seq,,target[,target...]`` (one line per user; a line with m targets = m examples) to and from the atomic
  files; :func:`pretrain_file_to_atomic` — the original pretraining CSV (left-padded with the token ``"0"``, which is
  kept as an ordinary item: quirk P1) to a sequential ``.inter`` file (timestamp = position in the row).
"""

import argparse
import os

import numpy as np
import pandas as pd
import recbole

from recbole_ext.data.dataset import SequentialDataset
from recbole_ext.errors import ConfigError, DatasetError

ML100K_DIR = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")
AGE_BANDS = [(0, 17, "<18"), (18, 24, "18-24"), (25, 34, "25-34"), (35, 44, "35-44"), (45, 49, "45-49"),
             (50, 55, "50-55"), (56, 200, "56+")]
ATTRIBUTES = ("gender", "age", "occupation")


# ------------------------------------------------------------------------------------------------
# pretraining datasets
# ------------------------------------------------------------------------------------------------
def thin_prefixes(uids, stride):
    """Boolean mask keeping rows ``0, stride, 2·stride, ...`` counted back from each user's last row.

    ``uids`` must be grouped by user (RecBole sorts by user and time before augmenting)."""
    uids = np.asarray(uids)
    n = len(uids)
    if n == 0 or stride <= 1:
        return np.ones(n, dtype=bool)
    is_last = np.r_[uids[1:] != uids[:-1], True]
    last_index = np.flatnonzero(is_last)
    group_last = last_index[np.searchsorted(last_index, np.arange(n))]
    return (group_last - np.arange(n)) % stride == 0


class _StridedPretrainDataset(SequentialDataset):
    def build(self):
        datasets = super().build()
        stride = self.config["pretrain_stride"]
        stride = int(self.config["MAX_ITEM_LIST_LENGTH"] if stride is None else stride)
        if stride < 1:
            raise ConfigError(f"pretrain_stride {stride}: must be >= 1 (1 = every prefix, ~ = MAX_ITEM_LIST_LENGTH)")
        train = datasets[0]
        keep = thin_prefixes(train.inter_feat[self.uid_field].numpy(), stride)
        if not keep.all():
            datasets[0] = train.copy(train.inter_feat[np.flatnonzero(keep)])
        return datasets


class NextItNetPDataset(_StridedPretrainDataset):
    """Sequential dataset of :class:`NextItNetP` (strided training windows, see the module docstring)."""


class GRecDataset(_StridedPretrainDataset):
    """Sequential dataset of :class:`GRec` (strided training windows, see the module docstring)."""


# ------------------------------------------------------------------------------------------------
# ml-100k converters
# ------------------------------------------------------------------------------------------------
def _read_atomic(path):
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def _ml100k(ml100k_dir=None):
    folder = ml100k_dir or ML100K_DIR
    paths = {k: os.path.join(folder, f"ml-100k.{k}") for k in ("inter", "user", "item")}
    for path in paths.values():
        if not os.path.isfile(path):
            raise DatasetError(f"ml-100k file {path} is missing; pass ml100k_dir pointing at RecBole's ml-100k atomic files")
    inter = _read_atomic(paths["inter"])
    inter["timestamp"] = inter["timestamp"].astype(float)
    inter["_item_num"] = inter["item_id"].astype(int)
    return inter, _read_atomic(paths["user"]), _read_atomic(paths["item"])


def user_sequences(inter, max_len):
    """Per user, the item tokens sorted by (timestamp, item id), the last ``max_len`` kept (vectorised)."""
    ordered = inter.sort_values(["user_id", "timestamp", "_item_num"], kind="stable")
    if max_len:
        ordered = ordered.groupby("user_id", sort=False).tail(int(max_len))
    return ordered.groupby("user_id", sort=False)["item_id"].agg(" ".join)


def _write(folder, name, frames):
    os.makedirs(folder, exist_ok=True)
    for suffix, (frame, header) in frames.items():
        with open(os.path.join(folder, f"{name}.{suffix}"), "w", encoding="utf-8") as f:
            f.write("\t".join(header) + "\n")
            frame.to_csv(f, sep="\t", header=False, index=False)


def _write_finetune_task(out_root, name, examples, user_frame):
    """A fine-tuning task: ``.inter`` (user, target) examples + ``.user`` source sequences."""
    _write(
        os.path.join(out_root, name),
        name,
        {
            "inter": (examples, ["user_id:token", "item_id:token"]),
            "user": (user_frame, ["user_id:token", "source_seq:token_seq"]),
        },
    )


def age_band(ages):
    ages = np.asarray(ages, dtype=int)
    labels = np.empty(len(ages), dtype=object)
    for low, high, label in AGE_BANDS:
        labels[(ages >= low) & (ages <= high)] = label
    return labels


def write_attribute_task(out_root, attribute="gender", max_source_len=50, name=None, ml100k_dir=None):
    """Write the ml-100k user-attribute task ``attribute``; return the dataset name."""
    if attribute not in ATTRIBUTES:
        raise ConfigError(f"attribute '{attribute}' is unknown: use one of {', '.join(ATTRIBUTES)}")
    name = name or f"ml-100k-{attribute}"
    inter, users, _ = _ml100k(ml100k_dir)
    seqs = user_sequences(inter, max_source_len)
    users = users[users["user_id"].isin(seqs.index)].copy()
    label = age_band(users["age"]) if attribute == "age" else users[attribute].to_numpy()
    examples = pd.DataFrame({"user_id": users["user_id"].to_numpy(), "item_id": label})
    user_frame = pd.DataFrame({"user_id": seqs.index.to_numpy(), "source_seq": seqs.to_numpy()})
    _write_finetune_task(out_root, name, examples, user_frame)
    return name


def write_coldrec_task(out_root, target_genres=("Horror", "Film-Noir", "Documentary", "Western"), max_targets=5,
                       max_source_len=50, prefix="ml-100k-cold", ml100k_dir=None):
    """Write ``<prefix>-src`` (source-domain sequential data) and ``<prefix>`` (the transfer task).

    Returns ``(source_name, target_name)``."""
    inter, _, items = _ml100k(ml100k_dir)
    genres = items["class"].str.split(" ")
    in_target = genres.apply(lambda g: bool(set(g) & set(target_genres)))
    target_items = set(items.loc[in_target, "item_id"])
    if not target_items:
        raise ConfigError(f"no ml-100k item has any of the genres {target_genres}")
    is_target = inter["item_id"].isin(target_items)
    source, target = inter[~is_target], inter[is_target]
    source_name, target_name = f"{prefix}-src", prefix
    _write(
        os.path.join(out_root, source_name),
        source_name,
        {"inter": (source[["user_id", "item_id", "rating", "timestamp"]],
                   ["user_id:token", "item_id:token", "rating:float", "timestamp:float"])},
    )
    seqs = user_sequences(source, max_source_len)
    target = target[target["user_id"].isin(seqs.index)]
    first = target.sort_values(["user_id", "timestamp", "_item_num"], kind="stable")
    first = first.groupby("user_id", sort=False).head(int(max_targets))
    user_frame = pd.DataFrame({"user_id": seqs.index.to_numpy(), "source_seq": seqs.to_numpy()})
    user_frame = user_frame[user_frame["user_id"].isin(first["user_id"])]
    _write_finetune_task(out_root, target_name, first[["user_id", "item_id"]], user_frame)
    return source_name, target_name


# ------------------------------------------------------------------------------------------------
# the original file layouts
# ------------------------------------------------------------------------------------------------
def read_finetune_file(path):
    """Parse ``source,,target[,target...]`` lines into ``[(source_tokens, target_tokens), ...]``."""
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    for number, line in enumerate(lines, 1):
        if line.count(",,") != 1:
            raise DatasetError(f"{path}:{number}: expected exactly one ',,' between source and targets, got {line!r}")
        source, targets = line.split(",,")
        source_tokens, target_tokens = source.split(","), targets.split(",")
        if not all(source_tokens) or not all(target_tokens):
            raise DatasetError(f"{path}:{number}: empty item id in {line!r}")
        rows.append((source_tokens, target_tokens))
    return rows


def finetune_file_to_atomic(path, out_root, name):
    """Convert an original fine-tune file; users are ``u<line number>``; one ``.inter`` row per target."""
    rows = read_finetune_file(path)
    users = [f"u{i + 1}" for i in range(len(rows))]
    examples = pd.DataFrame(
        [(u, t) for u, (_, targets) in zip(users, rows) for t in targets], columns=["user_id", "item_id"]
    )
    user_frame = pd.DataFrame({"user_id": users, "source_seq": [" ".join(s) for s, _ in rows]})
    _write_finetune_task(out_root, name, examples, user_frame)
    return name


def atomic_to_finetune_text(folder, name, final_newline=False):
    """The original ``source,,target[,...]`` text of an atomic fine-tune dataset (users in ``.user`` order)."""
    user_frame = _read_atomic(os.path.join(folder, f"{name}.user"))
    examples = _read_atomic(os.path.join(folder, f"{name}.inter"))
    targets = examples.groupby("user_id", sort=False)["item_id"].agg(",".join)
    lines = [
        seq.replace(" ", ",") + ",," + targets[user]
        for user, seq in zip(user_frame["user_id"], user_frame["source_seq"])
        if user in targets.index
    ]
    return "\n".join(lines) + ("\n" if final_newline else "")


def pretrain_file_to_atomic(path, out_root, name):
    """Convert an original pretraining CSV (one left-padded sequence per line) to ``<name>.inter``."""
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line]
    records = [(f"u{i + 1}", tok, float(t)) for i, line in enumerate(lines) for t, tok in enumerate(line.split(","))]
    frame = pd.DataFrame(records, columns=["user_id", "item_id", "timestamp"])
    _write(os.path.join(out_root, name), name, {"inter": (frame, ["user_id:token", "item_id:token", "timestamp:float"])})
    return name


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write PeterRec target-task datasets (RecBole atomic files).")
    parser.add_argument("task", choices=list(ATTRIBUTES) + ["coldrec", "demo"])
    parser.add_argument("--out", default="dataset", help="data_path to write into (default: dataset/)")
    parser.add_argument("--max_source_len", type=int, default=50)
    parser.add_argument("--demo_dir", default="../shared/datasets/peterrec-demo")
    args = parser.parse_args(argv)
    if args.task in ATTRIBUTES:
        names = [write_attribute_task(args.out, args.task, args.max_source_len)]
    elif args.task == "coldrec":
        names = list(write_coldrec_task(args.out, max_source_len=args.max_source_len))
    else:
        base = "history_sequences_20181014_fajie_transfer_{}_small.csv"
        names = [
            pretrain_file_to_atomic(os.path.join(args.demo_dir, base.format("pretrain")), args.out, "peterrec-demo-pre"),
            finetune_file_to_atomic(os.path.join(args.demo_dir, base.format("finetune")), args.out, "peterrec-demo-fine"),
        ]
    for name in names:
        print(os.path.join(args.out, name))


if __name__ == "__main__":
    main()
