"""Per-user metric tables of one evaluation (``save_per_user``; docs/compare.md).

:func:`per_user_table` turns an evaluation's data struct (``ExtCollector.last_struct``) into a DataFrame with
one row per evaluated user:

* ``user_id`` — the user's external token (``str``);
* ``user_group`` — the user's group, only when the run defines user groups (a ``UserGroup`` metric is configured):
  the groups of ``usergroup_source`` (by default Mainstream / Diverse / Niche,
  :data:`recbole_ext.data.popularity.USER_GROUP_NAMES`), ``none`` for a user without a group;
* one column per per-user metric and cutoff, named as in the run's result (``ndcg@10``, ``jsd@10``, ...):
  RecBole's top-k metrics (hit, ndcg, recall, mrr, precision, map) and every metric with a
  ``per_user(dataobject)`` method, through :func:`recbole_ext.evaluator.metrics.calibration.per_user_metric`.

Set-level metrics (item coverage, Gini index, ...) have no per-user values: :func:`split_metrics` names them with
the reason. The mean of every metric column is the run's value of that metric before RecBole's rounding
(:func:`mismatched_columns` checks it).
"""

import numpy as np
import pandas as pd

from recbole_ext.data.popularity import USER_GROUP_NAMES
from recbole_ext.evaluator.metrics.calibration import per_user_metric
from recbole_ext.evaluator.register import topk_list

USER_COLUMN = "user_id"
GROUP_COLUMN = "user_group"


def _metric_class(name):
    from recbole.evaluator.register import metrics_dict

    return metrics_dict.get(str(name).lower())


def has_per_user_values(name):
    """True for a metric with one value per user: a RecBole top-k metric or a class with ``per_user``."""
    from recbole.evaluator.base_metric import TopkMetric

    cls = _metric_class(name)
    return cls is not None and (issubclass(cls, TopkMetric) or callable(getattr(cls, "per_user", None)))


def split_metrics(config):
    """``(names, skipped)``: the configured metrics (lower case, config order) that have per-user values, and
    ``{name: reason}`` for those that do not."""
    names, skipped = [], {}
    for metric in config["metrics"]:
        name = str(metric).lower()
        if has_per_user_values(name):
            names.append(name)
        else:
            skipped[name] = "no per-user values (a set- or group-level metric)"
    return names, skipped


def user_groups(struct):
    """``(group id per internal user id, group names)`` of the run's user groups, or ``None`` when it defines
    none: the ``usergroup`` metric's groups (``usergroup_source``), else the CaliTune groups when collected."""
    if "usergroup.user_group" in struct and "usergroup.user_group_names" in struct:
        return struct.get("usergroup.user_group").long(), tuple(struct.get("usergroup.user_group_names"))
    if "calib.user_group" in struct:
        return struct.get("calib.user_group").long(), USER_GROUP_NAMES
    return None


def per_user_table(config, struct, dataset):
    """One row per evaluated user of ``struct`` (rows in evaluation order); see the module docstring.

    ``struct`` must hold ``rec.users`` (collected when ``save_per_user`` is set) and the inputs of the configured
    metrics; ``dataset`` translates internal user ids into tokens."""
    if "rec.users" not in struct:
        raise ValueError("per_user_table needs 'rec.users' in the data struct: evaluate with save_per_user: True")
    users = struct.get("rec.users").long()
    n_rows = int(users.shape[0])
    columns = {USER_COLUMN: np.asarray(dataset.id2token(dataset.uid_field, users.numpy())).astype(str)}
    groups = user_groups(struct)
    if groups is not None:
        ids, group_names = groups
        ids = ids[users].numpy()
        names = np.asarray(list(group_names) + ["none"], dtype=object)  # -1 (no group) -> "none"
        columns[GROUP_COLUMN] = names[np.where(ids >= 0, ids, len(group_names))]
    topk = topk_list(config)
    for name in split_metrics(config)[0]:
        values = np.asarray(per_user_metric(name, config, struct), dtype=np.float64)
        if values.ndim != 2 or values.shape[0] != n_rows or values.shape[1] < max(topk):
            raise ValueError(
                f"metric '{name}' gave per-user values of shape {values.shape}, expected [{n_rows}, >= {max(topk)}]"
            )
        for k in topk:
            columns[f"{name}@{k}"] = values[:, k - 1]
    return pd.DataFrame(columns)


def metric_columns(table):
    """The metric columns of a per-user table (everything but ``user_id`` / ``user_group``)."""
    return [c for c in table.columns if c not in (USER_COLUMN, GROUP_COLUMN)]


def mismatched_columns(table, result, decimal_place):
    """``{column: (mean, reported)}`` for metric columns whose mean differs from ``result[column]`` by more than
    RecBole's rounding to ``decimal_place`` places (or that ``result`` lacks: ``reported`` ``None``)."""
    tolerance = 0.5 * 10.0 ** (-int(decimal_place)) + 1e-9
    bad = {}
    for column in metric_columns(table):
        mean = float(table[column].mean())
        reported = None if result is None else result.get(column)
        if reported is None or not abs(mean - float(reported)) <= tolerance:
            bad[column] = (mean, reported)
    return bad
