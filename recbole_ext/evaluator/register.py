"""Injection of recbole_ext metrics into RecBole's metric registry.

RecBole builds its registry once, by scanning ``recbole.evaluator.metrics`` only
(``recbole.evaluator.register.cluster_info``). Its four containers are imported by reference by the
Evaluator, the Register and the Config, so adding entries in place makes a metric usable by name in
any ``metrics: [...]`` list. This must happen before a Config is built (``import recbole_ext`` does).
"""

from recbole.evaluator import register as recbole_register
from recbole.evaluator.base_metric import AbstractMetric

EXT_METRICS = {}


def topk_list(config):
    """``config['topk']`` as a list (a Config normalises it already; plain dicts in unit tests may not)."""
    topk = config["topk"]
    return [topk] if isinstance(topk, int) else list(topk)


def smaller_is_better(metric):
    """True when RecBole ranks ``metric`` (``jsd@10``, ``giniindex@10``, a per-group key such as ``jsd_niche@10``)
    smaller-is-better (``recbole.evaluator.register.smaller_metrics``; a per-group key takes its base metric's
    direction). Shared by the comparison verdicts and the frontier's Pareto directions."""
    name = str(metric).split("@", 1)[0].lower()
    smaller = recbole_register.smaller_metrics
    return name in smaller or name.split("_", 1)[0] in smaller


def register_metric(cls):
    """Class decorator: make ``cls`` (an ``AbstractMetric``) available as ``cls.__name__.lower()``.

    A name that RecBole already uses for another class is refused: our metrics must not silently
    change the meaning of an existing RecBole metric.
    """
    if not (isinstance(cls, type) and issubclass(cls, AbstractMetric)):
        raise TypeError(f"{cls!r} is not a subclass of recbole.evaluator.base_metric.AbstractMetric")
    name = cls.__name__.lower()
    existing = recbole_register.metrics_dict.get(name)
    if existing is not None and existing is not cls and name not in EXT_METRICS:
        raise ValueError(f"metric name '{name}' is already RecBole's {existing.__module__}.{existing.__name__}")
    recbole_register.metrics_dict[name] = cls
    recbole_register.metric_information[name] = list(cls.metric_need)
    recbole_register.metric_types[name] = cls.metric_type
    if getattr(cls, "smaller", False):
        if name not in recbole_register.smaller_metrics:
            recbole_register.smaller_metrics.append(name)
    elif name in recbole_register.smaller_metrics:
        recbole_register.smaller_metrics.remove(name)
    EXT_METRICS[name] = cls
    return cls
