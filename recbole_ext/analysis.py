"""Per-user analysis of recommendation lists (CaliTune spec §9.4).

* :func:`recommend_topk` — every evaluated user's top-k list from a trainer (re-ranker included);
* :func:`per_user_metrics` — a DataFrame with one row per user: run label, user id, P_u, user group,
  NDCG@k, JSD@k; :func:`export_per_user_tsv` writes such frames as TSV (``.zip`` / ``.gz`` compressed
  by file name);
* :func:`rbo` — rank-biased overlap of two runs' lists, per user, vectorised (truncated RBO at the list
  depth and the extrapolated RBO_ext; persistence ``p``, default 0.9 — the spec leaves it open).
"""

import numpy as np
import pandas as pd
import torch

from recbole_ext import checkpoint as ckpt
from recbole_ext.data.popularity import ITEM_GROUP_NAMES, USER_GROUP_NAMES, calibration_data
from recbole_ext.errors import ConfigError
from recbole_ext.evaluator.metrics.calibration import per_user_jsd
from recbole_ext.quick_start import config_from_checkpoint, setup_run
from recbole_ext.trainer.rerank import build_reranker


@torch.no_grad()
def recommend_topk(trainer, eval_data, k=10):
    """``(users [n], items [n, k], positives list of sets)`` as the trainer's evaluation sees them:
    history masked, re-ranker (``rerank`` config key) applied."""
    trainer.model.eval()
    if trainer.reranker is not None:
        trainer.reranker.prepare(trainer, eval_data)
    uid = trainer.config["USER_ID_FIELD"]
    users, items, hits, n_pos = [], [], [], []
    for batched in eval_data:
        interaction, scores, positive_u, positive_i = trainer._full_sort_batch_eval(batched)
        top = torch.topk(scores, k, dim=1).indices.cpu()
        pos = torch.zeros(scores.shape, dtype=torch.bool)
        pos[positive_u.cpu(), positive_i.cpu()] = True
        users.append(interaction[uid].cpu())
        items.append(top)
        hits.append(torch.gather(pos, 1, top))
        n_pos.append(pos.sum(1))
    return torch.cat(users), torch.cat(items), torch.cat(hits), torch.cat(n_pos)


def ndcg_from_hits(hits, n_pos):
    """Binary NDCG@k per user from a ``[n, k]`` hit matrix and the number of relevant items."""
    k = hits.shape[1]
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    dcg = (hits.double() * discount).sum(1)
    ideal = torch.cumsum(discount, 0)[(n_pos.clamp(max=k) - 1).clamp_min(0)]
    return torch.where(n_pos > 0, dcg / ideal, torch.zeros_like(dcg))


def per_user_metrics(trainer, eval_data, label, k=10, return_items=False):
    """One row per evaluated user: ``model, user_id, p_highpop, p_midpop, p_lowpop, user_group, ndcg, jsd``.

    With ``return_items`` also the ``[n, k]`` recommended internal item ids (rows as in the frame)."""
    dataset = getattr(trainer.eval_collector, "train_dataset", None)
    if dataset is None:
        raise ConfigError("per_user_metrics needs trainer.collect_train_data(train_data) (or a fitted trainer) first")
    calib = calibration_data(dataset, trainer.config)
    users, items, hits, n_pos = recommend_topk(trainer, eval_data, k)
    jsd = per_user_jsd(items, users, calib.item_group, calib.user_target)[:, k - 1]
    target = calib.user_target[users].numpy()
    tokens = dataset.id2token(dataset.uid_field, users.numpy())
    frame = pd.DataFrame(
        {
            "model": label,
            "user_id": tokens,
            **{f"p_{name}": target[:, g] for g, name in enumerate(ITEM_GROUP_NAMES)},
            "user_group": np.asarray(USER_GROUP_NAMES, dtype=object)[calib.user_group[users].clamp_min(0).numpy()],
            "ndcg": ndcg_from_hits(hits, n_pos).numpy(),
            "jsd": jsd.numpy(),
        }
    )
    return (frame, items) if return_items else frame


def export_per_user_tsv(frames, path):
    """Write one or more :func:`per_user_metrics` frames to ``path`` (TSV; compressed if ``.zip``/``.gz``)."""
    if isinstance(frames, pd.DataFrame):
        frames = [frames]
    table = pd.concat(list(frames), ignore_index=True)
    compression = "infer"
    if str(path).endswith(".zip"):
        name = str(path).rsplit("/", 1)[-1][: -len(".zip")]
        compression = {"method": "zip", "archive_name": name if name.endswith(".tsv") else name + ".tsv"}
    table.to_csv(path, sep="\t", index=False, compression=compression, float_format="%.6f")
    return path


def rbo(lists_a, lists_b, p=0.9):
    """Rank-biased overlap (Webber et al., 2010) of two ``[n, D]`` item-id lists, row by row.

    Returns ``(rbo_truncated, rbo_ext)``: (1 − p)·Σ_{d≤D} p^{d−1}·A_d and the extrapolated
    A_D·p^D + (1 − p)/p·Σ_{d≤D} p^d·A_d, where A_d = |a[:d] ∩ b[:d]| / d.
    """
    if not 0.0 < p < 1.0:
        raise ConfigError(f"rbo persistence p must lie in (0, 1), got {p}")
    a = torch.as_tensor(lists_a)
    b = torch.as_tensor(lists_b)
    if a.shape != b.shape or a.dim() != 2:
        raise ConfigError(f"rbo needs two [n, D] lists of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    depth = a.shape[1]
    equal = (a.unsqueeze(2) == b.unsqueeze(1)).double()  # [n, D, D]
    # X_d = Σ_{i<d, j<d} equal[i, j]: 2-D prefix sums read on the diagonal
    prefix = equal.cumsum(1).cumsum(2)
    overlap = torch.diagonal(prefix, dim1=1, dim2=2)  # [n, D]
    d = torch.arange(1, depth + 1, dtype=torch.float64)
    agreement = overlap / d
    weights = p ** (d - 1)
    truncated = (1 - p) * (agreement * weights).sum(1)
    extrapolated = agreement[:, -1] * p**depth + (1 - p) / p * (agreement * p**d).sum(1)
    return truncated, extrapolated


def evaluate_checkpoint(model_file, config_dict=None, split="test"):
    """Evaluate a saved model (backbone or CaliTune snapshot) with extra settings, e.g. ``rerank: cp``.

    The configuration is the checkpoint's own (user-given part) updated by ``config_dict``; the
    ``trainer`` key is dropped so that evaluation uses the model's ordinary trainer (plus the
    re-ranking hook). Returns ``(result, trainer, (train_data, valid_data, test_data))`` — the trainer
    can be re-used: :func:`set_reranker` swaps the re-ranker without reloading data. A ``config_dict``
    that changes the data split (seed, ``eval_args``, filters) is refused (:class:`CheckpointError`): the
    model would be evaluated on rows it was trained on.
    """
    checkpoint = ckpt.load_checkpoint(model_file)
    run = setup_run(config_from_checkpoint(checkpoint, config_dict), checkpoint=checkpoint, checkpoint_file=model_file)
    trainer, train_data, valid_data, test_data = run.trainer, run.train_data, run.valid_data, run.test_data
    trainer.collect_train_data(train_data)
    data = {"valid": valid_data, "test": test_data}[split]
    result = trainer.evaluate(data, load_best_model=False)
    return dict(result), trainer, (train_data, valid_data, test_data)


def set_reranker(trainer, name=None, **keys):
    """Replace ``trainer``'s re-ranker: ``set_reranker(trainer, "cp", cp_lambda=0.3)``; ``None`` = off."""
    trainer.config["rerank"] = name
    for key, value in keys.items():
        trainer.config[key] = value
    trainer.reranker = build_reranker(trainer.config)
    return trainer.reranker
