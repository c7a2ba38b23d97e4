"""MoRec's options, read from the config (defaults: ``properties/trainer/MoRec.yaml``) and validated once."""

from types import SimpleNamespace

from recbole_ext.errors import ConfigError
from recbole_ext.options import check_choices
from recbole_ext.trainer.morec.controller import build_coordinator

OBJECTIVES = ("fairness", "alignment", "revenue")
CHOICES = {
    "morec_loss": ("auto", "bpr", "bce", "ce"),
    "morec_fair_loss_norm": ("total", "group"),
    "morec_fair_metric": ("loss", "hit"),
    "morec_batch_allocation": ("faithful", "largest_remainder"),
    "morec_revenue_bins": ("faithful", "array_split"),
    "morec_select": ("last", "best"),
}


def parse_objectives(value):
    """A non-empty list of distinct objective names, from a list or its string form ("[a, b]")."""
    objectives = value
    if isinstance(objectives, str):
        objectives = [o.strip() for o in objectives.strip("[]").replace("'", "").split(",") if o.strip()]
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or not objectives or len(set(objectives)) != len(objectives):
        raise ConfigError(
            f"morec_objectives: unknown or repeated objectives {unknown or objectives}; choose a non-empty list "
            f"of distinct names among {list(OBJECTIVES)} (accuracy is always trained)"
        )
    return list(objectives)


def parse_ngroup(value, objectives):
    if isinstance(value, (list, tuple)) or not float(value).is_integer():
        raise ConfigError(f"morec_ngroup must be one int (revenue groups), got {value!r} (quirk M7: lists are "
                          "not supported)")
    if "revenue" in objectives and int(value) <= 0:
        raise ConfigError("morec_ngroup must be > 0 with the revenue objective: one group per item makes every "
                          "sub-batch degenerate (quirk M12)")
    return int(value)


def coordinator_from_config(config, objectives):
    """The objective coordinator (PI controller or static weights) of ``morec_objective_controller``."""
    return build_coordinator(
        config["morec_objective_controller"], objectives, config["morec_objective_weights"],
        lambda_=config["morec_lambda"], expect_loss=config["morec_expect_loss"], K_p=config["morec_K_p"],
        K_i=config["morec_K_i"], beta_min=config["morec_beta_min"], beta_max=config["morec_beta_max"],
        max_iter=config["morec_max_iter"],
    )


def read_options(config, model):
    """MoRec's options for ``model``; the per-row loss ``auto`` resolved (``ce`` for CE-trained models)."""
    objectives = parse_objectives(config["morec_objectives"])
    ngroup = parse_ngroup(config["morec_ngroup"], objectives)
    choices = check_choices(config, CHOICES, "MoRec")
    loss = choices["morec_loss"]
    if loss == "auto":
        loss = "ce" if str(getattr(model, "loss_type", "")).upper() == "CE" else "bpr"
    n_neg = int(config["morec_neg_num"])
    if n_neg < 1 and loss != "ce":
        raise ConfigError("morec_neg_num must be >= 1 for the bpr / bce losses")
    return SimpleNamespace(
        objectives=objectives, ngroup=ngroup, alpha=float(config["morec_alpha"]), loss_kind=loss, n_neg=n_neg,
        neg_alpha=float(config["morec_neg_pop_alpha"]), fair_norm=choices["morec_fair_loss_norm"],
        fair_metric=choices["morec_fair_metric"], align_topk=int(config["morec_align_topk"]),
        batch_allocation=choices["morec_batch_allocation"], revenue_bins=choices["morec_revenue_bins"],
        select=choices["morec_select"], early_stop=_flag(config, "morec_early_stop"),
    )


def _flag(config, key):
    value = config[key]
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be True or False, got {value!r}")
    return value
