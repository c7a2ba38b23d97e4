"""CaliTune: fine-tuning a trained recommender for calibrated recommendations.

Lesota, Bajko, Walder, Wenzel, Tommasel, Schedl: "Fine-tuning for Inference-efficient Calibrated
Recommendations", RecSys 2025 (LBR). Spec: ``shared/specs/calitune.md``.

``trainer: CaliTune`` with ``model: BPR | DMF | MultiVAE`` and ``pretrained_model_file`` (a backbone
checkpoint written by ``run_recbole.py``). Per mini-batch of users the loss is

    L = (1 − λ) · LA_u + λ · KL(P_u ‖ Q_u)

* LA_u — listwise KL between softmax(train labels) and softmax(scores) over the user's top-m
  candidates C_u (MultiVAE: its own ELBO instead);
* Q_u — score-weighted popularity-group shares over C_u, weights = min–max normalised scores;
* C_u — top-m items by the current scores (only PAD excluded), recomputed after every epoch.

After every epoch one scoring pass over all users yields the next candidates, validation NDCG@k
(train items masked) and JSD@k (train and valid items masked). A snapshot is saved whenever NDCG, JSD
or tradeoff = sqrt(NDCG/NDCG_0 · JSD_0/JSD) beats its best so far (quirk C2); the model evaluated after
``fit`` is the last snapshot (``calitune_select: last``) or the best by ``ndcg`` / ``jsd`` / ``tradeoff``.

Config keys (defaults): ``calitune_lambda`` 0.25, ``calitune_candidates`` 100, ``calitune_freeze_items``
False, ``calitune_batch_size`` 16 users, ``learning_rate`` (RAdam), ``calitune_lr_step`` 20,
``calitune_lr_gamma`` 0.9, ``epochs`` (max), ``calitune_patience`` 25, ``calitune_select`` last,
``calitune_snapshots`` True (write every snapshot to disk when ``saved``), ``calitune_seed`` (None =
keep the global seed; the data split always uses ``seed``, which must equal the backbone's).
"""

import copy
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from recbole.data.interaction import Interaction
from recbole.utils import set_color

from recbole_ext import checkpoint as ckpt
from recbole_ext.data.popularity import calibration_data
from recbole_ext.errors import CheckpointError, ConfigError
from recbole_ext.evaluator.metrics.calibration import jsd as eval_jsd
from recbole_ext.trainer.trainer import Trainer

SUPPORTED_BACKBONES = ("BPR", "DMF", "MultiVAE")
# settings that decide RecBole's train / valid / test split: they must equal the backbone's
SPLIT_KEYS = (
    "seed", "eval_args", "load_col", "unload_col", "benchmark_filename", "rm_dup_inter", "val_interval",
    "filter_inter_by_user_or_item", "user_inter_num_interval", "item_inter_num_interval",
)
DEFAULTS = {
    "calitune_lambda": 0.25,
    "calitune_candidates": 100,
    "calitune_freeze_items": False,
    "calitune_batch_size": 16,
    "calitune_lr_step": 20,
    "calitune_lr_gamma": 0.9,
    "calitune_patience": 25,
    "calitune_select": "last",
    "calitune_snapshots": True,
}


def _cfg(config, key):
    value = config[key]
    return DEFAULTS[key] if value is None else value


# ------------------------------------------------------------------------------------------------
# losses (spec §5.2, §5.3)
# ------------------------------------------------------------------------------------------------
def listwise_loss(scores, labels):
    """KL(softmax(labels) ‖ softmax(scores)) over the candidates, summed / batch size."""
    target = torch.softmax(labels.to(scores.dtype), dim=1)
    return F.kl_div(F.log_softmax(scores, dim=1), target, reduction="batchmean")


def group_distribution(scores, cand_onehot):
    """Q_u: min–max normalised candidate scores summed per group, normalised to 1.

    No ε in the min–max denominator (quirk C4); only the degenerate all-equal case is guarded
    (every candidate then weighs 1)."""
    low = scores.min(dim=1, keepdim=True).values
    high = scores.max(dim=1, keepdim=True).values
    span = high - low
    flat = span <= 0
    weights = (scores - low) / torch.where(flat, torch.ones_like(span), span)
    weights = torch.where(flat, torch.ones_like(weights), weights)
    mass = (weights.unsqueeze(-1) * cand_onehot).sum(dim=1)
    return mass / mass.sum(dim=1, keepdim=True).clamp_min(1e-30)


def calibration_loss(scores, cand_onehot, targets):
    """KL(P_u ‖ Q_u) with ε = 1e-10 on both sides (PyTorch KLDivLoss, batchmean)."""
    q = group_distribution(scores, cand_onehot)
    return F.kl_div(torch.log(q + 1e-10), targets + 1e-10, reduction="batchmean")


def calitune_loss(accuracy, scores, cand_onehot, targets, lam):
    """(1 − λ)·accuracy + λ·calibration; λ = 0 skips the calibration term, λ = 1 the accuracy term."""
    total = scores.new_zeros(())
    if lam < 1.0:
        total = total + (1.0 - lam) * accuracy
    if lam > 0.0:
        total = total + lam * calibration_loss(scores, cand_onehot, targets)
    return total


def _ndcg_at_k(top_items, relevant_dense, k):
    """Binary NDCG@k per user; ``relevant_dense`` is a [b, n_items] bool matrix."""
    hits = torch.gather(relevant_dense, 1, top_items[:, :k]).double()
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    dcg = (hits * discount).sum(1)
    n_rel = relevant_dense.sum(1).clamp(max=k)
    idcg = torch.cumsum(discount, 0)[(n_rel - 1).clamp_min(0)]
    return torch.where(n_rel > 0, dcg / idcg, torch.zeros_like(dcg)), n_rel > 0


class CaliTuneTrainer(Trainer):
    """Fine-tunes a BPR / DMF / MultiVAE backbone for calibration (CaliTune, RecSys 2025)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.backbone = type(model).__name__
        if self.backbone not in SUPPORTED_BACKBONES:
            raise ConfigError(
                f"trainer CaliTune supports the backbones {', '.join(SUPPORTED_BACKBONES)}, not "
                f"'{self.backbone}' (config key 'model')"
            )
        self.lam = float(_cfg(config, "calitune_lambda"))
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"calitune_lambda must lie in [0, 1] (calibration weight), got {self.lam}")
        self.k = max(config["topk"]) if not isinstance(config["topk"], int) else config["topk"]
        self.m = int(_cfg(config, "calitune_candidates"))
        if self.m < self.k:
            raise ConfigError(
                f"calitune_candidates (m = {self.m}) must be at least max(topk) = {self.k}: the candidate "
                "set has to hold a whole top-k list"
            )
        if self.m >= model.n_items:
            raise ConfigError(f"calitune_candidates (m = {self.m}) must be smaller than the item count {model.n_items}")
        self.freeze_items = bool(_cfg(config, "calitune_freeze_items"))
        self.batch_users = int(_cfg(config, "calitune_batch_size"))
        self.patience = int(_cfg(config, "calitune_patience"))
        self.select = str(_cfg(config, "calitune_select")).lower()
        if self.select not in ("last", "ndcg", "jsd", "tradeoff"):
            raise ConfigError(f"calitune_select must be last, ndcg, jsd or tradeoff, got '{self.select}'")
        path = config["pretrained_model_file"]
        if not path:
            raise ConfigError(
                "trainer CaliTune fine-tunes a trained backbone: set pretrained_model_file to its checkpoint "
                "(saved/<Model>-<time>.pth written by run_recbole.py)"
            )
        saved = ckpt.load_checkpoint(path)
        meta = saved["meta"]
        if meta.get("model") != config["model"]:
            raise CheckpointError(
                f"{path} holds a '{meta.get('model')}' model but this run fine-tunes '{config['model']}'; "
                "set model to the backbone's model"
            )
        current = ckpt.plain_config(config)
        for key in SPLIT_KEYS:
            if key in saved["config"] and saved["config"][key] != current.get(key):
                raise CheckpointError(
                    f"{path} was trained on another data split: '{key}' is {saved['config'][key]!r} there but "
                    f"{current.get(key)!r} here. CaliTune must see the backbone's exact train/valid/test split — "
                    "use the backbone's data settings (the fine-tuning seed is calitune_seed)"
                )
        self.backbone_checkpoint = ckpt.load_pretrained(model, path, config)
        if self.backbone == "DMF":
            model.i_embedding = None
        self.optimizer = torch.optim.RAdam(self._trainable_parameters(), lr=config["learning_rate"])
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=int(_cfg(config, "calitune_lr_step")), gamma=float(_cfg(config, "calitune_lr_gamma"))
        )
        self.snapshots = []
        self.history = []
        self.epoch_seconds = []
        self._dmf_items = None

    # --------------------------------------------------------------------------------------------
    def _trainable_parameters(self):
        model = self.model
        if not self.freeze_items:
            return [p for p in model.parameters() if p.requires_grad]
        if self.backbone == "BPR":
            params = list(model.user_embedding.parameters())
        elif self.backbone == "DMF":
            params = list(model.user_linear.parameters()) + list(model.user_fc_layers.parameters())
        else:  # MultiVAE: the encoder is the user side, the decoder holds the item representations
            params = list(model.encoder.parameters())
        keep = {id(p) for p in params}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
        return params

    def _dmf_item_tower(self):
        model = self.model
        if self._dmf_items is None:
            coo = model.interaction_matrix.tocoo()
            index = torch.from_numpy(np.vstack([coo.col, coo.row]).astype(np.int64))
            self._dmf_items = torch.sparse_coo_tensor(
                index, torch.from_numpy(coo.data.astype(np.float32)), (model.n_items, model.n_users)
            ).coalesce().to(self.device)
        item = torch.sparse.mm(self._dmf_items, model.item_linear.weight.t())
        return model.item_fc_layers(item)

    def _candidate_scores(self, users, cand):
        """Differentiable raw scores over the candidates, and the accuracy term of the backbone."""
        model = self.model
        if self.backbone == "BPR":
            u = model.user_embedding(users)
            scores = (u.unsqueeze(1) * model.item_embedding(cand)).sum(-1)
            return scores, None
        if self.backbone == "DMF":
            u = model.user_fc_layers(model.get_user_embedding(users))
            items = self._dmf_item_tower()
            return (u.unsqueeze(1) * items[cand]).sum(-1), None
        rating = model.get_rating_matrix(users)
        model.update += 1
        anneal = (
            min(model.anneal_cap, 1.0 * model.update / model.total_anneal_steps)
            if model.total_anneal_steps > 0
            else model.anneal_cap
        )
        z, mu, logvar = model(rating)
        kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)) * anneal
        ce = -(F.log_softmax(z, 1) * rating).sum(1).mean()
        return torch.gather(z, 1, cand), ce + kl

    @torch.no_grad()
    def _full_scores(self, users):
        if self.backbone == "BPR":
            scores = self.model.user_embedding(users) @ self.model.item_embedding.weight.t()
        else:
            inter = Interaction({self.config["USER_ID_FIELD"]: users})
            scores = self.model.full_sort_predict(inter.to(self.device)).view(users.shape[0], -1)
        scores = scores.float().clone()
        scores[:, 0] = float("-inf")
        return scores

    @torch.no_grad()
    def scoring_pass(self, valid_csr=None):
        """One pass over all users: next candidates (+ labels) and validation NDCG@k / JSD@k."""
        self.model.eval()
        if self.backbone == "DMF":
            self.model.i_embedding = None
        n_users = self.model.n_users
        cand_all = torch.zeros(n_users, self.m, dtype=torch.long)
        label_all = torch.zeros(n_users, self.m, dtype=torch.bool)
        ndcg_sum, ndcg_n, jsd_sum, jsd_n = 0.0, 0, 0.0, 0
        chunk = max(1, int(self.config["eval_batch_size"] or 4096) // 8)
        for start in range(1, n_users, chunk):
            users = torch.arange(start, min(start + chunk, n_users))
            scores = self._full_scores(users.to(self.device)).cpu()
            cand = torch.topk(scores, self.m, dim=1).indices
            train = torch.from_numpy(self._train_csr[users.numpy()].toarray() > 0)
            cand_all[users] = cand
            label_all[users] = torch.gather(train, 1, cand)
            if valid_csr is not None:
                valid = torch.from_numpy(valid_csr[users.numpy()].toarray() > 0)
                scores = scores.masked_fill(train, float("-inf"))
                top = torch.topk(scores, self.k, dim=1).indices
                ndcg, has = _ndcg_at_k(top, valid, self.k)
                ndcg_sum += float(ndcg[has].sum())
                ndcg_n += int(has.sum())
                top = torch.topk(scores.masked_fill(valid, float("-inf")), self.k, dim=1).indices
                shares = self._onehot[top].mean(dim=1)
                has_hist = train.any(dim=1)
                values = eval_jsd(self._targets[users], shares)
                jsd_sum += float(values[has_hist].sum())
                jsd_n += int(has_hist.sum())
        if self.backbone == "DMF":
            self.model.i_embedding = None
        metrics = None
        if valid_csr is not None:
            metrics = {"ndcg": ndcg_sum / max(ndcg_n, 1), "jsd": jsd_sum / max(jsd_n, 1)}
        return cand_all, label_all, metrics

    def _train_epoch_users(self, cand_all, label_all):
        self.model.train()
        users = torch.arange(1, self.model.n_users)  # PAD user dropped (quirk C6)
        world, rank = 1, 0
        if self.distributed:
            # multi-process: one user order shared by all processes (a generator seeded alike), each
            # process takes every world-th user of each batch and the gradients are averaged: one
            # synchronised step is one batch_users step, as in a single process
            world, rank = dist.get_world_size(), dist.get_rank()
            self._dist_epoch = getattr(self, "_dist_epoch", 0) + 1
            seed = self.config["calitune_seed"] if self.config["calitune_seed"] is not None else self.config["seed"]
            generator = torch.Generator().manual_seed(int(seed) * 1000003 + self._dist_epoch)
            users = users[torch.randperm(users.shape[0], generator=generator)]
        else:
            users = users[torch.randperm(users.shape[0])]
        total = 0.0
        for start in range(0, users.shape[0], self.batch_users):
            batch = users[start : start + self.batch_users][rank::world]
            if batch.numel() == 0:  # a last batch smaller than the number of processes
                self.optimizer.zero_grad()
                self._average_gradients(weight=0.0)
                self.optimizer.step()
                continue
            cand = cand_all[batch].to(self.device)
            labels = label_all[batch].to(self.device)
            batch = batch.to(self.device)
            scores, accuracy = self._candidate_scores(batch, cand)
            if accuracy is None:
                accuracy = listwise_loss(scores, labels.float())
            loss = calitune_loss(accuracy, scores, self._onehot_dev[cand], self._targets_dev[batch], self.lam)
            self.optimizer.zero_grad()
            loss.backward()
            if world > 1:
                self._average_gradients(weight=1.0)
            self.optimizer.step()
            total += float(loss.detach())
        if self.backbone == "DMF":
            self.model.i_embedding = None
        return total

    def _average_gradients(self, weight):
        """All-reduce the gradients: the mean over the processes that had users in this step
        (``weight`` 1) — the others (``weight`` 0) contribute nothing, as in a single process."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) * weight
                          for p in params] + [torch.tensor([float(weight)], device=self.device)])
        dist.all_reduce(flat)
        count = max(float(flat[-1]), 1.0)
        offset = 0
        for p in params:
            n = p.numel()
            grad = (flat[offset : offset + n] / count).view_as(p)
            if p.grad is None:
                p.grad = grad.clone()
            else:
                p.grad.copy_(grad)
            offset += n

    # --------------------------------------------------------------------------------------------
    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        if valid_data is None:
            raise ConfigError("CaliTune needs validation data: snapshots are chosen on validation NDCG and JSD")
        self.eval_collector.data_collect(train_data)
        self._train_collected = True
        dataset = train_data._dataset
        calib = calibration_data(dataset, self.config)
        self._onehot = calib.item_onehot
        self._targets = calib.user_target
        self._onehot_dev = self._onehot.to(self.device)
        self._targets_dev = self._targets.to(self.device)
        self._train_csr = dataset.inter_matrix(form="csr")
        valid_csr = valid_data._dataset.inter_matrix(form="csr")

        seed = self.config["calitune_seed"]
        if seed is not None:  # the fine-tuning's own seed (user order); the split keeps the backbone's seed
            torch.manual_seed(int(seed))
            np.random.seed(int(seed))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        snap_dir = os.path.join(self.config["checkpoint_dir"], f"CaliTune-{self.config['model']}-{stamp}-{os.getpid()}")
        if self.distributed:  # rank 0's folder for every process (only rank 0 writes)
            names = [snap_dir]
            dist.broadcast_object_list(names, src=0)
            snap_dir = names[0]
        write = saved and bool(_cfg(self.config, "calitune_snapshots")) and self.is_main_process

        cand, labels, ref = self.scoring_pass(valid_csr)
        self.reference = dict(ref)
        self.history.append({"epoch": 0, **ref, "tradeoff": 1.0, "loss": None})
        best = {"ndcg": 0.0, "jsd": 1.0, "tradeoff": 0.0}
        kept = {}
        since_improved, unchanged = 0, 0
        previous = ref
        max_epochs = int(self.config["epochs"])
        for epoch in range(1, max_epochs + 1):
            start = time.perf_counter()
            loss = self._train_epoch_users(cand, labels)
            cand, labels, metrics = self.scoring_pass(valid_csr)
            self.scheduler.step()
            seconds = time.perf_counter() - start
            self.epoch_seconds.append(seconds)
            tradeoff = (metrics["ndcg"] / max(ref["ndcg"], 1e-12)) ** 0.5 * (ref["jsd"] / max(metrics["jsd"], 1e-12)) ** 0.5
            row = {"epoch": epoch, **metrics, "tradeoff": tradeoff, "loss": loss, "seconds": seconds}
            self.history.append(row)
            reasons = []
            if metrics["ndcg"] > best["ndcg"]:
                reasons.append("ndcg")
            if metrics["jsd"] < best["jsd"]:
                reasons.append("jsd")
            if tradeoff > best["tradeoff"]:
                reasons.append("tradeoff")
            if reasons:
                best["ndcg"] = max(best["ndcg"], metrics["ndcg"])
                best["jsd"] = min(best["jsd"], metrics["jsd"])
                best["tradeoff"] = max(best["tradeoff"], tradeoff)
                state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
                snap = {**row, "reasons": reasons, "path": None}
                if write:
                    snap["path"] = os.path.join(snap_dir, f"epoch_{epoch}.pth")
                    self.best_valid_score = metrics["ndcg"]
                    self.cur_step = since_improved
                    ckpt.atomic_torch_save(ckpt.build_state(self, epoch), snap["path"])
                self.snapshots.append(snap)
                kept["last"] = (snap, state)  # deep copy: the "best weights" bug C3 is fixed
                for reason in reasons:
                    kept[reason] = (snap, state)
                since_improved = 0
            else:
                since_improved += 1
            if verbose:
                self.logger.info(
                    set_color(f"CaliTune epoch {epoch}", "green")
                    + f" loss {loss:.4f}  valid ndcg@{self.k} {metrics['ndcg']:.4f}  jsd@{self.k} {metrics['jsd']:.4f}"
                    + f"  tradeoff {tradeoff:.4f}  [{seconds:.2f}s]" + (f"  saved ({', '.join(reasons)})" if reasons else "")
                )
            if callback_fn is not None:
                callback_fn(epoch, metrics["ndcg"])
            stalled = abs(metrics["ndcg"] - previous["ndcg"]) < 1e-6 and abs(metrics["jsd"] - previous["jsd"]) < 1e-6
            unchanged = unchanged + 1 if stalled else 0
            previous = metrics
            if since_improved >= self.patience or unchanged >= 3:
                break
        if not kept:  # epochs: 0 — evaluate the loaded model as it is (e.g. a backbone with rerank: cp)
            self.selected = None
            if saved and self.is_main_process:
                ckpt.atomic_torch_save(ckpt.build_state(self, 0), self.saved_model_file)
            self.best_valid_score = ref["ndcg"]
            self.best_valid_result = {f"ndcg@{self.k}": round(ref["ndcg"], 4), f"jsd@{self.k}": round(ref["jsd"], 4)}
            return self.best_valid_score, self.best_valid_result
        snap, state = kept[self.select]
        self.model.load_state_dict(state)
        if self.backbone == "DMF":
            self.model.i_embedding = None
        self.selected = snap
        if snap["path"]:
            self.saved_model_file = snap["path"]
        else:
            self.saved_model_file = os.path.join(snap_dir, f"epoch_{snap['epoch']}.pth")
            if saved and self.is_main_process:
                ckpt.atomic_torch_save(ckpt.build_state(self, snap["epoch"]), self.saved_model_file)
        self.best_valid_score = snap["ndcg"]
        self.best_valid_result = {
            f"ndcg@{self.k}": round(snap["ndcg"], 4),
            f"jsd@{self.k}": round(snap["jsd"], 4),
            "tradeoff": round(snap["tradeoff"], 4),
            "epoch": snap["epoch"],
        }
        return self.best_valid_score, self.best_valid_result
