"""BaM's leave-one-out split (``bam_split: original``) next to RecBole's (``bam_split: recbole``).

Both put each user's last row in test and the one before it in valid, the rest in train; they differ
for users with few rows. A sequential dataset has one row per target position, i.e. ``n - 1`` rows for
a user with ``n`` interactions.

* ``recbole`` (RecBole's ``leave_one_out``): ``min(2, rows - 1)`` rows leave train, so at least one row
  always stays there. n = 2: the only row is trained on and never tested; n = 3: test, but no valid row,
  and the other row is trained on.
* ``original`` (snudatalab/BaM ``data_partition`` + ``DataIterator``): test target = the last item,
  valid target = the second-to-last, train sequence = all items but the last two, and the training
  sampler redraws users whose train sequence is shorter than 2 — so ``min(2, rows)`` rows leave train.
  n = 2: tested (one test row); n = 3: valid + test, nothing in train; n >= 4: ``n - 3`` train rows.
  The training pool (users with a train row) is exactly the original's (train sequence >= 2).

What RecBole's rows cannot hold: a target with an empty history. The original also validates users
with n = 2 and tests users with n = 1 on an empty history (the model sees only padding); those
rows do not exist here (users with >= 20 interactions, as in ml-100k, are unaffected: both splits
coincide there).

The split's effect is recorded through ``config["split_fingerprint"]`` (it hashes each part's rows),
so a checkpoint refuses data split the other way wherever the two differ.
"""

import numpy as np
import torch

from recbole_ext import options
from recbole_ext.errors import ConfigError

SPLITS = ("recbole", "original")


def split_choice(config):
    return options.check_choices(config, {"bam_split": SPLITS}, "data_preparation")["bam_split"]


def build(config, dataset):
    """``dataset.build()`` with ``bam_split: recbole``; the original's split with ``bam_split: original``."""
    if split_choice(config) == "recbole":
        return dataset.build()
    _check_eval_args(config)
    dataset._change_feat_format()  # as Dataset.build (sequential datasets augment here)
    dataset.sort(by=dataset.time_field)
    parts = original_leave_one_out_index(dataset.inter_feat[dataset.uid_field].numpy())
    dataset._drop_unused_col()
    return [dataset.copy(dataset.inter_feat[torch.from_numpy(index)]) for index in parts]


def _check_eval_args(config):
    eval_args = config["eval_args"]
    if eval_args["split"] != {"LS": "valid_and_test"} or eval_args["order"] != "TO":
        raise ConfigError(
            "bam_split: original is BaM's per-user leave-one-out; it needs eval_args split {LS: valid_and_test} "
            f"and order TO, got split {eval_args['split']} and order {eval_args['order']!r} "
            "(set bam_split: recbole for other splits)"
        )
    if config["benchmark_filename"] is not None:
        raise ConfigError("bam_split: original splits one .inter file; it cannot be combined with benchmark_filename")


def original_leave_one_out_index(users):
    """Row indices ``(train, valid, test)`` of BaM's split for rows in time order with user ids ``users``.

    Per user: the last row -> test, the one before (if any) -> valid, the rest -> train. Rows are grouped
    by user in order of first appearance, time order within a user (the order of RecBole's own split).
    Vectorised: one stable sort.
    """
    users = np.asarray(users)
    _, first, inverse, counts = np.unique(users, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((np.arange(len(users)), first[inverse]))  # by user's first row, then time
    grouped = inverse[order]
    starts = np.concatenate(([0], np.flatnonzero(grouped[1:] != grouped[:-1]) + 1)) if len(users) else np.zeros(0, int)
    position = np.arange(len(users)) - np.repeat(starts, np.diff(np.append(starts, len(users))))
    from_end = counts[grouped] - 1 - position  # 0 = the user's last row
    return (
        order[from_end >= 2].astype(np.int64),
        order[from_end == 1].astype(np.int64),
        order[from_end == 0].astype(np.int64),
    )
