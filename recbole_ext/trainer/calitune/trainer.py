"""The CaliTune trainer: fine-tunes a trained BPR / DMF / MultiVAE backbone for calibration."""

import copy
import os
import time

import numpy as np
import torch
from recbole.utils import set_color

from recbole_ext import checkpoint as ckpt
from recbole_ext import distributed, options
from recbole_ext.data.popularity import calibration_data
from recbole_ext.errors import CheckpointError, ConfigError
from recbole_ext.evaluator.metrics.calibration import jsd as eval_jsd
from recbole_ext.io import unique_path
from recbole_ext.trainer.calitune.backbones import BACKBONES
from recbole_ext.trainer.calitune.losses import calitune_loss, listwise_loss, ndcg_at_k
from recbole_ext.trainer.trainer import Trainer, run_label

# settings that decide RecBole's train / valid / test split: they must equal the backbone's
SPLIT_KEYS = (
    "seed", "eval_args", "load_col", "unload_col", "benchmark_filename", "rm_dup_inter", "val_interval",
    "filter_inter_by_user_or_item", "user_inter_num_interval", "item_inter_num_interval",
)
SELECTIONS = ("last", "ndcg", "jsd", "tradeoff", "valid_jsd_target")


def select_by_valid_jsd_target(history, target):
    """The epoch with the best validation NDCG among those whose validation JSD is at or below ``target``
    (ties: the earlier epoch); None when no epoch qualifies. ``history``: (epoch, valid ndcg, valid jsd)
    rows. Validation metrics only — the test split is never looked at."""
    best = None
    for epoch, ndcg, jsd in history:
        if jsd <= target and (best is None or ndcg > best[1]):
            best = (epoch, ndcg)
    return None if best is None else best[0]


class CaliTuneTrainer(Trainer):
    """Fine-tunes a BPR / DMF / MultiVAE backbone for calibration (CaliTune, RecSys 2025)."""

    loads_pretrained_model_file = True  # reads pretrained_model_file itself

    def __init__(self, config, model):
        name = type(model).__name__
        if name not in BACKBONES:
            raise ConfigError(
                f"trainer CaliTune supports the backbones {', '.join(BACKBONES)}, not '{name}' (config key 'model')"
            )
        self.backbone = BACKBONES[name](model, config)  # before RecBole's __init__: _build_optimizer reads it
        super().__init__(config, model)
        self.lam = float(config["calitune_lambda"])
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"calitune_lambda must lie in [0, 1] (calibration weight), got {self.lam}")
        self.k = max(config["topk"])
        self.m = int(config["calitune_candidates"])
        if self.m < self.k:
            raise ConfigError(
                f"calitune_candidates (m = {self.m}) must be at least max(topk) = {self.k}: the candidate "
                "set has to hold a whole top-k list"
            )
        if self.m >= model.n_items:
            raise ConfigError(f"calitune_candidates (m = {self.m}) must be smaller than the item count {model.n_items}")
        self.batch_users = int(config["calitune_batch_size"])
        self.patience = int(config["calitune_patience"])
        self.select = options.check_choices(config, {"calitune_select": SELECTIONS}, "CaliTune")["calitune_select"]
        self.jsd_target = self._jsd_target(config)
        self._load_backbone(config, model)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=int(config["calitune_lr_step"]), gamma=float(config["calitune_lr_gamma"])
        )
        self.snapshots = []
        self.loss_parts = {}  # the last epoch's mean unweighted loss terms (accuracy, calibration)
        self.history = []  # every epoch's validation metrics (the snapshots are a subset)
        self.epoch_seconds = []

    def _jsd_target(self, config):
        target = config["calitune_valid_jsd_target"]
        if self.select != "valid_jsd_target":
            return None
        if target is None or not 0.0 <= float(target) <= 1.0:
            raise ConfigError(
                "calitune_select: valid_jsd_target needs calitune_valid_jsd_target, a validation JSD@k in [0, 1] "
                f"(got {target!r})"
            )
        return float(target)

    def _load_backbone(self, config, model):
        path = config["pretrained_model_file"]
        if not path:
            raise ConfigError(
                "trainer CaliTune fine-tunes a trained backbone: set pretrained_model_file to its checkpoint "
                "(saved/<Model>-<time>-<pid>.pth written by run_recbole.py)"
            )
        saved = ckpt.load_checkpoint(path)
        if saved["meta"].get("model") != config["model"]:
            raise CheckpointError(
                f"{path} holds a '{saved['meta'].get('model')}' model but this run fine-tunes '{config['model']}'; "
                "set model to the backbone's model"
            )
        # the settings that decide the split first (they name the key to fix); then load_pretrained compares
        # the dataset and the split's fingerprint (rows actually in train / valid / test)
        current = ckpt.plain_config(config)
        for key in SPLIT_KEYS:
            if key in saved["config"] and saved["config"][key] != current.get(key):
                raise CheckpointError(
                    f"{path} was trained on another data split: '{key}' is {saved['config'][key]!r} there but "
                    f"{current.get(key)!r} here. CaliTune must see the backbone's exact train/valid/test split — "
                    "use the backbone's data settings (the fine-tuning seed is calitune_seed)"
                )
        ckpt.load_pretrained(model, path, config, checkpoint=saved)
        self.backbone.clear_cache()

    def _build_optimizer(self, **kwargs):
        """RAdam over the trainable parameters: all of them, or with ``calitune_freeze_items`` only the
        backbone's user side (the others stop requiring gradients)."""
        if not self.config["calitune_freeze_items"]:
            return torch.optim.RAdam([p for p in self.model.parameters() if p.requires_grad], lr=self.learning_rate)
        params = self.backbone.user_parameters()
        keep = {id(p) for p in params}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in keep)
        return torch.optim.RAdam(params, lr=self.learning_rate)

    # --- one epoch: RecBole's hooks -------------------------------------------------------------
    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        """One pass over all users (PAD dropped, quirk C6) in shuffled batches of ``calitune_batch_size``,
        on the candidates of the last scoring pass; then one StepLR step. Returns the summed loss;
        ``self.loss_parts`` holds the epoch's mean unweighted accuracy / calibration terms per batch."""
        self.model.train()
        cand_all, label_all = self._candidates
        users = torch.arange(1, self.model.n_users)
        world, rank = 1, 0
        if self.distributed:
            # one user order shared by all processes (a generator seeded alike); each process takes every
            # world-th user of each batch and the gradients are averaged: one step is one batch, as in one process
            world, rank = distributed.world_size(), distributed.rank()
            seed = self.config["calitune_seed"] if self.config["calitune_seed"] is not None else self.config["seed"]
            generator = torch.Generator().manual_seed(int(seed) * 1000003 + epoch_idx)
            users = users[torch.randperm(users.shape[0], generator=generator)]
        else:
            users = users[torch.randperm(users.shape[0])]
        params = [p for p in self.model.parameters() if p.requires_grad]
        total = 0.0
        part_sums, n_batches = {}, 0
        starts = range(0, users.shape[0], self.batch_users)
        for start in self.progress(starts, f"CaliTune train {epoch_idx:>3}", show_progress):
            batch = users[start : start + self.batch_users][rank::world]
            self.optimizer.zero_grad()
            if batch.numel() == 0:  # a last batch smaller than the number of processes: take part with nothing
                distributed.all_reduce_gradients(params, 0.0, self.device)
                self.optimizer.step()
                self.invalidate_model_caches()
                continue
            cand = cand_all[batch].to(self.device)
            labels = label_all[batch].to(self.device)
            batch = batch.to(self.device)
            scores, accuracy = self.backbone.candidate_scores(batch, cand)
            if accuracy is None:
                accuracy = listwise_loss(scores, labels.float())
            parts = {}
            loss = calitune_loss(accuracy, scores, self._onehot_dev[cand], self._targets_dev[batch], self.lam, parts)
            for key, value in parts.items():
                part_sums[key] = part_sums.get(key, 0.0) + value
            n_batches += 1
            loss.backward()
            if world > 1:
                distributed.all_reduce_gradients(params, 1.0, self.device)
            self.optimizer.step()
            self.invalidate_model_caches()  # the weights changed outside calculate_loss
            total += float(loss.detach())
        self.backbone.clear_cache()
        self.scheduler.step()
        self.loss_parts = {key: value / max(n_batches, 1) for key, value in part_sums.items()}
        return total

    @torch.no_grad()
    def _valid_epoch(self, valid_data, show_progress=False):
        """One scoring pass over all users: the next epoch's candidates (top-m, only PAD excluded) with their
        train labels, validation NDCG@k (train items masked) and JSD@k (train and valid items masked).
        Returns ``(ndcg, {"ndcg": ..., "jsd": ...})``."""
        self.model.eval()
        self.backbone.clear_cache()
        valid_csr = valid_data._dataset.inter_matrix(form="csr")
        n_users = self.model.n_users
        cand_all = torch.zeros(n_users, self.m, dtype=torch.long)
        label_all = torch.zeros(n_users, self.m, dtype=torch.bool)
        ndcg_sum, ndcg_n, jsd_sum, jsd_n = 0.0, 0, 0.0, 0
        chunk = max(1, int(self.config["eval_batch_size"]) // 8)
        for start in self.progress(range(1, n_users, chunk), "CaliTune scoring", show_progress):
            users = torch.arange(start, min(start + chunk, n_users))
            scores = self.backbone.full_scores(users.to(self.device)).float().clone()
            scores[:, 0] = float("-inf")
            scores = scores.cpu()
            cand = torch.topk(scores, self.m, dim=1).indices
            train = torch.from_numpy(self._train_csr[users.numpy()].toarray() > 0)
            cand_all[users] = cand
            label_all[users] = torch.gather(train, 1, cand)
            valid = torch.from_numpy(valid_csr[users.numpy()].toarray() > 0)
            scores = scores.masked_fill(train, float("-inf"))
            ndcg, has = ndcg_at_k(torch.topk(scores, self.k, dim=1).indices, valid, self.k)
            ndcg_sum += float(ndcg[has].sum())
            ndcg_n += int(has.sum())
            top = torch.topk(scores.masked_fill(valid, float("-inf")), self.k, dim=1).indices
            has_history = train.any(dim=1)
            jsd_sum += float(eval_jsd(self._targets[users], self._onehot[top].mean(dim=1))[has_history].sum())
            jsd_n += int(has_history.sum())
        self.backbone.clear_cache()
        self._candidates = (cand_all, label_all)
        metrics = {"ndcg": ndcg_sum / max(ndcg_n, 1), "jsd": jsd_sum / max(jsd_n, 1)}
        return metrics["ndcg"], metrics

    # --- the run ----------------------------------------------------------------------------------
    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        # RecBole's fit cannot express CaliTune's loop (spec §6): a reference scoring pass precedes epoch 1,
        # every epoch is scored whatever eval_step says (the pass also yields the next candidates), epochs
        # count from 1 (snapshot names), a snapshot is kept whenever NDCG, JSD or the trade-off improves,
        # training stops on patience or a stall, and the selected snapshot is loaded at the end.
        if valid_data is None:
            raise ConfigError("CaliTune needs validation data: snapshots are chosen on validation NDCG and JSD")
        self.collect_train_data(train_data)
        self._prepare(train_data._dataset)
        self.eval_only = int(self.config["epochs"]) <= 0
        snap_dir = self._snapshot_dir()
        write = saved and bool(self.config["calitune_snapshots"]) and self.is_main_process
        _, ref = self._valid_epoch(valid_data, show_progress=show_progress)
        self.log_scalars("CaliTune/valid", ref, 0)  # step 0: the backbone before fine-tuning
        if verbose:
            self.logger.info(set_color("CaliTune backbone", "green") + f": λ {self.lam}  valid ndcg@{self.k} "
                             f"{ref['ndcg']:.4f}  jsd@{self.k} {ref['jsd']:.4f}")
        best = {"ndcg": 0.0, "jsd": 1.0, "tradeoff": 0.0}
        kept = {}
        since_improved, unchanged, previous = 0, 0, ref
        self.stop_reason = "epochs"  # the epoch cap, unless patience or a stall stops the loop first
        for epoch in range(1, int(self.config["epochs"]) + 1):
            start = time.perf_counter()
            loss = self._train_epoch(train_data, epoch, show_progress=show_progress)
            _, metrics = self._valid_epoch(valid_data, show_progress=show_progress)
            seconds = time.perf_counter() - start
            self.epoch_seconds.append(seconds)
            tradeoff = (metrics["ndcg"] / max(ref["ndcg"], 1e-12)) ** 0.5 * (ref["jsd"] / max(metrics["jsd"], 1e-12)) ** 0.5
            row = {"epoch": epoch, **metrics, "tradeoff": tradeoff, "loss": loss, "seconds": seconds}
            self.history.append(row)
            if self.jsd_target is not None:
                self._keep_if_target_best(kept, row)
            improved = {"ndcg": metrics["ndcg"] > best["ndcg"], "jsd": metrics["jsd"] < best["jsd"],
                        "tradeoff": tradeoff > best["tradeoff"]}
            reasons = [key for key, better in improved.items() if better]
            if reasons:
                best = {"ndcg": max(best["ndcg"], metrics["ndcg"]), "jsd": min(best["jsd"], metrics["jsd"]),
                        "tradeoff": max(best["tradeoff"], tradeoff)}
                snap = {**row, "reasons": reasons, "path": None}
                if write:
                    snap["path"] = os.path.join(snap_dir, f"epoch_{epoch}.pth")
                    self.best_valid_score, self.cur_step = metrics["ndcg"], since_improved
                    self._save_checkpoint(epoch, verbose=False, saved_model_file=snap["path"])
                self.snapshots.append(snap)
                # a deep copy of the weights (the original's "best weights" bug C3 is fixed)
                state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
                kept.update(dict.fromkeys(["last"] + reasons, (snap, state)))
                since_improved = 0
            else:
                since_improved += 1
            self.log_scalars("CaliTune/loss", {"total": loss, **self.loss_parts}, epoch)
            self.log_scalars("CaliTune/valid", {**metrics, "tradeoff": tradeoff}, epoch)
            self.log_scalars("CaliTune/lr", self.optimizer.param_groups[0]["lr"], epoch)
            if verbose:  # short at INFO; the loss parts and the learning rate at DEBUG
                self.logger.info(
                    set_color(f"CaliTune epoch {epoch}", "green")
                    + f" loss {loss:.4f}  valid ndcg@{self.k} {metrics['ndcg']:.4f}  jsd@{self.k} {metrics['jsd']:.4f}"
                    + f"  tradeoff {tradeoff:.4f}  [{seconds:.2f}s]" + (f"  saved ({', '.join(reasons)})" if reasons else "")
                )
                self.logger.debug(
                    f"CaliTune epoch {epoch} detail: λ {self.lam}, mean loss terms per batch "
                    + ", ".join(f"{k} {v:.6f}" for k, v in self.loss_parts.items())
                    + f", lr {self.optimizer.param_groups[0]['lr']:.3g}, since improved {since_improved}"
                )
            if callback_fn is not None:
                callback_fn(epoch, metrics["ndcg"])
            stalled = abs(metrics["ndcg"] - previous["ndcg"]) < 1e-6 and abs(metrics["jsd"] - previous["jsd"]) < 1e-6
            unchanged = unchanged + 1 if stalled else 0
            previous = metrics
            if since_improved >= self.patience or unchanged >= 3:
                self.stop_reason = "patience" if since_improved >= self.patience else "stalled"
                break
        self.flush_tensorboard()
        return self._finish(kept, ref, snap_dir, saved)

    def _keep_if_target_best(self, kept, row):
        """``calitune_select: valid_jsd_target``: keep this epoch's weights (one copy in memory) when
        :func:`select_by_valid_jsd_target` over the epochs so far picks it."""
        history = [(r["epoch"], r["ndcg"], r["jsd"]) for r in self.history]
        if select_by_valid_jsd_target(history, self.jsd_target) != row["epoch"]:
            return
        state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
        kept["valid_jsd_target"] = ({**row, "reasons": ["valid_jsd_target"], "path": None}, state)

    def _resolved_selection(self, kept):
        """``calitune_select``'s key into ``kept``; with ``valid_jsd_target`` and no epoch at or below the
        target, the lowest-valid-JSD snapshot instead — said loudly, and recorded in ``best_valid_result``."""
        if self.select != "valid_jsd_target":
            return self.select
        if "valid_jsd_target" in kept:
            snap = kept["valid_jsd_target"][0]
            self.logger.warning(
                f"CaliTune (calitune_select: valid_jsd_target): evaluating epoch {snap['epoch']}, the best valid "
                f"ndcg@{self.k} ({snap['ndcg']:.4f}) among epochs with valid jsd@{self.k} <= {self.jsd_target} "
                f"(its jsd {snap['jsd']:.4f}); the last snapshot is epoch {kept['last'][0]['epoch']}"
            )
            return "valid_jsd_target"
        self.logger.warning(
            f"CaliTune (calitune_select: valid_jsd_target): NO epoch of {len(self.history)} reached valid "
            f"jsd@{self.k} <= {self.jsd_target} (lowest {kept['jsd'][0]['jsd']:.4f}, epoch {kept['jsd'][0]['epoch']}); "
            "evaluating that lowest-JSD snapshot instead — the target was NOT met"
        )
        return "jsd"

    def _prepare(self, dataset):
        """Popularity groups and user targets of the training split, its interaction matrix, and the
        fine-tuning's own seed (user order) — the data split keeps the backbone's ``seed``."""
        calib = calibration_data(dataset, self.config)
        self._onehot, self._targets = calib.item_onehot, calib.user_target
        self._onehot_dev, self._targets_dev = self._onehot.to(self.device), self._targets.to(self.device)
        self._train_csr = dataset.inter_matrix(form="csr")
        seed = self.config["calitune_seed"]
        if seed is not None:
            torch.manual_seed(int(seed))
            np.random.seed(int(seed))

    def _snapshot_dir(self):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        # <run label>-<time>-<pid> (BPR-CaliTune-...): no other run (of this process or another) uses the folder
        snap_dir = unique_path(os.path.join(self.config["checkpoint_dir"], f"{run_label(self.config)}-{stamp}"), ext="")
        # rank 0's folder for every process (only rank 0 writes)
        return distributed.broadcast_from_rank0(snap_dir) if self.distributed else snap_dir

    def _finish(self, kept, ref, snap_dir, saved):
        """Load the snapshot that ``calitune_select`` picks (the model as loaded when no epoch ran) and
        make it the checkpoint that evaluation reads."""
        if not kept:  # epochs: 0 — evaluate the loaded model as it is (e.g. a backbone with rerank: cp)
            self.selected = None
            if saved and (not self.eval_only or self.save_eval_only_checkpoint()):
                self._save_checkpoint(0, verbose=False)
            self.best_valid_score = ref["ndcg"]
            self.best_valid_result = {f"ndcg@{self.k}": round(ref["ndcg"], 4), f"jsd@{self.k}": round(ref["jsd"], 4)}
            return self.best_valid_score, self.best_valid_result
        snap, state = kept[self._resolved_selection(kept)]
        self.model.load_state_dict(state)
        self.backbone.clear_cache()
        self.invalidate_model_caches()
        self.selected = snap
        if snap["path"]:
            self.saved_model_file = snap["path"]
        else:
            self.saved_model_file = os.path.join(snap_dir, f"epoch_{snap['epoch']}.pth")
            if saved:
                self._save_checkpoint(snap["epoch"], verbose=False)
        self.best_valid_score = snap["ndcg"]
        self.best_valid_result = {
            f"ndcg@{self.k}": round(snap["ndcg"], 4),
            f"jsd@{self.k}": round(snap["jsd"], 4),
            "tradeoff": round(snap["tradeoff"], 4),
            "epoch": snap["epoch"],
        }
        if self.select == "valid_jsd_target":
            self.best_valid_result["jsd_target_met"] = snap["jsd"] <= self.jsd_target
        return self.best_valid_score, self.best_valid_result
