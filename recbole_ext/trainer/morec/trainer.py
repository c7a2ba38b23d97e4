"""``MoRecTrainer``: the epoch loop of MoRec's post-training (see the package docstring)."""

import json
import math
import os
import time

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.utils import ModelType, set_color

from recbole_ext import checkpoint as ckpt
from recbole_ext import distributed
from recbole_ext.data import morec_data
from recbole_ext.errors import ConfigError
from recbole_ext.io import atomic_write_text, unique_path
from recbole_ext.trainer.morec import losses, signals
from recbole_ext.trainer.morec.options import coordinator_from_config, read_options
from recbole_ext.trainer.morec.plot import plot_trajectory
from recbole_ext.trainer.morec.sampler import MoRecSampler
from recbole_ext.trainer.trainer import Trainer, format_result, run_title


class MoRecTrainer(Trainer):
    """MoRec tri-level post-training (arXiv 2310.13260): adaptive sampler + PI/static coordinator."""

    loads_pretrained_model_file = True  # reads pretrained_model_file itself

    def __init__(self, config, model):
        super().__init__(config, model)
        self.options = read_options(config, model)
        self.coordinator = coordinator_from_config(config, self.options.objectives)
        if not self.options.early_stop:  # UniRec's MoRec runs use early_stop = -1: every epoch runs
            self.stopping_step = math.inf
        ckpt.load_pretrained(model, config["pretrained_model_file"], config)
        self.morec_history = []
        self.sampler = None
        self.trajectory_path = None

    # --- set-up from the data ------------------------------------------------------------------
    def _objective_groups(self, dataset, train_items):
        """Per objective: the group of every item and the initial sampling weights (revenue: the
        groups' mean prices; fairness / alignment: the groups' shares of the training rows)."""
        item2group, weights = {}, {}
        for o in self.options.objectives:
            if o == "revenue":
                price = morec_data.item_weight(dataset, self.config).numpy()
                faithful = self.options.revenue_bins == "faithful"
                groups, means = morec_data.weight_groups(price, self.options.ngroup, faithful=faithful)
                groups[0] = 0
                item2group[o], weights[o] = groups, means / means.sum()
            else:
                groups = morec_data.item_groups(dataset, self.config, "fair" if o == "fairness" else "align").numpy()
                share = np.bincount(groups[train_items], minlength=groups.max() + 1).astype(float)
                share[0] = 0.0
                item2group[o], weights[o] = groups, share / len(train_items)
        return item2group, weights

    def _setup(self, train_data, valid_data):
        dataset = train_data._dataset
        config = self.config
        self.iid, self.uid = dataset.iid_field, dataset.uid_field
        self.n_items = dataset.item_num
        self.train_inter = dataset.inter_feat
        train_items = self.train_inter[self.iid].numpy()
        item2group, weights = self._objective_groups(dataset, train_items)
        self.item2group = {o: torch.as_tensor(g) for o, g in item2group.items()}
        if valid_data is None:
            raise ConfigError("MoRec needs validation data for its sampler signals (eval_args split with valid)")
        self.valid_inter = valid_data._dataset.inter_feat
        self.align_groups = None
        if "alignment" in self.options.objectives:
            self.align_groups = morec_data.item_groups(dataset, config, "align")
            self.p_star = morec_data.expected_align_distribution(dataset, config, self.align_groups,
                                                                 valid_inter=self.valid_inter).numpy()
        self.sampler = MoRecSampler(train_items, item2group, weights, self.options.alpha,
                                    int(config["train_batch_size"]), self.options.batch_allocation,
                                    seed=int(config["seed"]))
        # user_history = train + valid interactions: negatives never come from it
        users = [self.train_inter[self.uid], self.valid_inter[self.uid]]
        items = [self.train_inter[self.iid], self.valid_inter[self.iid]]
        seq_field = self.iid + config["LIST_SUFFIX"]
        if config["MODEL_TYPE"] == ModelType.SEQUENTIAL and seq_field in self.train_inter.interaction:
            seq = self.train_inter[seq_field]
            users.append(self.train_inter[self.uid].unsqueeze(1).expand_as(seq)[seq > 0])
            items.append(seq[seq > 0])
        self.history_keys = torch.unique(torch.cat(users).long() * self.n_items + torch.cat(items).long())
        counts = torch.bincount(torch.cat(items[:2]).long(), minlength=self.n_items).double()
        counts[0] = 0.0
        alpha = self.options.neg_alpha
        self.neg_probs = counts.pow(alpha) * (counts > 0) if alpha > 0 else None
        # negatives: one stream per process under DDP (each process draws for its own rows)
        rank = distributed.rank() if self.distributed else 0
        self.generator = torch.Generator().manual_seed(int(config["seed"]) + rank)

    # --- per-row losses ------------------------------------------------------------------------
    def _sample_negatives(self, users, positives, n_neg, uniform=False):
        probs = None if uniform else self.neg_probs
        return losses.sample_negatives(users, positives, n_neg, self.n_items, self.history_keys, self.generator, probs)

    def row_losses(self, interaction, uniform_negatives=False):
        """Unreduced per-row loss of the model on ``interaction`` (one positive per row)."""
        negatives = None
        if self.options.loss_kind != "ce":
            negatives = self._sample_negatives(interaction[self.uid].cpu(), interaction[self.iid].cpu(),
                                               self.options.n_neg, uniform=uniform_negatives).to(self.device)
        return losses.row_losses(self.model, interaction, self.options.loss_kind, self.iid, negatives)

    def _rows(self, inter, index):
        index = torch.as_tensor(index, dtype=torch.long)
        return Interaction({k: v[index] for k, v in inter.interaction.items()}).to(self.device)

    # --- validation signals --------------------------------------------------------------------
    def _fairness_losses(self, show_progress=False):
        """Per fair group: summed per-row loss over its validation rows / |V| (M1) or / |V_g|."""
        self.model.train()  # UniRec runs this pass in train mode (M14)
        self.invalidate_model_caches()  # a cache of the eval-mode pass before is not this mode's scores
        chunk = max(int(self.config["eval_batch_size"]) // max(self.options.n_neg, 1), 1)

        def valid_losses(index):
            return self.row_losses(self._rows(self.valid_inter, index), uniform_negatives=True)

        n_chunks = -(-len(self.valid_inter) // chunk)
        progress = lambda starts: self.progress(starts, "MoRec fairness", show_progress, total=n_chunks)  # noqa: E731
        return signals.fairness_losses(valid_losses, self.valid_inter[self.iid], self.item2group["fairness"], chunk,
                                       per_group=self.options.fair_norm == "group", progress=progress)

    def _signals(self, valid_data, show_progress=False):
        objectives, hit_metric = self.options.objectives, self.options.fair_metric == "hit"
        sig, info = {}, {}
        q = hit = None
        if "alignment" in objectives or ("fairness" in objectives and hit_metric):
            self.model.eval()
            self.invalidate_model_caches()
            k = min(self.options.align_topk, self.n_items - 1)
            q, hit = signals.topk_pass(self, valid_data, k, self.align_groups, with_hits=hit_metric,
                                       show_progress=show_progress)
        if "fairness" in objectives:
            if hit_metric:
                scores = signals.group_hit_rates(*hit, self.item2group["fairness"])
            else:
                scores = self._fairness_losses(show_progress)
            sig["fairness"] = signals.fairness_signal(scores, higher_is_worse=not hit_metric)
            info["fairness_worst_group"] = int(np.argmax(sig["fairness"]))
        if "alignment" in objectives:
            sig["alignment"] = signals.alignment_signal(q, self.p_star)
            info["alignment_q"] = [round(float(v), 6) for v in q]
        if "revenue" in objectives:
            sig["revenue"] = np.zeros(len(self.sampler.weights["revenue"]), dtype=int)
        return sig, info

    # --- training ------------------------------------------------------------------------------
    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        sig, info = self._signals(self._valid_data, show_progress)
        world, rank = (distributed.world_size(), distributed.rank()) if self.distributed else (1, 0)
        if world > 1:  # rank 0's signals for all (the fairness-loss pass draws per-process negatives)
            sig, info = distributed.broadcast_from_rank0((sig, info))
        self.sampler.update(sig)
        signal_seconds = time.perf_counter() - start
        # the sampler is seeded alike in every process: the same batches everywhere
        batches = torch.from_numpy(self.sampler.epoch_batches())
        objectives = self.options.objectives
        n_parts, batch_size = len(objectives) + 1, self.sampler.batch_size
        self.model.train()
        # the signal passes' cache holds no gradients (and, for models with dropout, other-mode scores)
        self.invalidate_model_caches()
        total_loss, betas = 0.0, []
        part_sums = torch.zeros(n_parts, dtype=torch.float64)
        for step in self.progress(range(batches.shape[0]), f"MoRec train {epoch_idx:>3}", show_progress):
            rows = batches[step]
            if world > 1:  # every world-th row of each sub-batch
                rows = rows.view(n_parts, batch_size)[:, rank::world].reshape(-1)
            self.optimizer.zero_grad()
            chunks = self.row_losses(self._rows(self.train_inter, rows)).view(n_parts, -1)
            if world > 1:
                # value: the sub-batch means over all processes (the coordinator's beta sees the
                # global accuracy loss); gradient: this process's rows / batch_size, summed below
                local = chunks.sum(dim=1) / batch_size
                total = local.detach().clone()
                distributed.all_reduce_sum(total)  # in place, on the loss's device and dtype
                parts = local + (total - local.detach())
            else:
                parts = chunks.mean(dim=1)
            loss = self.coordinator.combine(list(parts[:-1]), parts[-1])
            self._check_nan(loss)
            loss.backward()
            if world > 1:
                distributed.all_reduce_gradients([p for p in self.model.parameters() if p.requires_grad])
            if self.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), **self.clip_grad_norm)
            self.optimizer.step()
            # the weights changed outside calculate_loss: a cached full-sort embedding is stale (issue 14)
            self.invalidate_model_caches()
            total_loss += loss.item()
            betas.append(self.coordinator.beta)
            part_sums += parts.detach().double().cpu()
        entry = {
            "epoch": epoch_idx,
            "beta_mean": float(np.mean(betas)),
            "beta_last": float(betas[-1]),
            "sampling_weights": self._sampling_weights(),
            "objective_losses": {name: float(v) / batches.shape[0]
                                 for name, v in zip(objectives + ["accuracy"], part_sums)},
            "train_loss": total_loss,
            "signal_seconds": round(signal_seconds, 3),
            "train_seconds": round(time.perf_counter() - start, 3),
            **info,
        }
        self.morec_history.append(entry)
        self._log_tensorboard(entry, sig)
        self.logger.debug(f"MoRec epoch {epoch_idx} detail: {json.dumps(entry)}")
        if not self._validates(epoch_idx):  # else the line is written with the validation result
            self._log_epoch_line(entry)
        return total_loss

    def _validates(self, epoch_idx):
        """Whether RecBole's fit validates after epoch ``epoch_idx`` (as its own test)."""
        return bool(self._valid_data) and self.eval_step > 0 and (epoch_idx + 1) % self.eval_step == 0

    def _log_epoch_line(self, entry, valid_result=None):
        """The short INFO line of an epoch (the whole entry is logged at DEBUG)."""
        short = {"fairness": "fair", "alignment": "align", "revenue": "rev", "accuracy": "acc"}
        line = (f": loss {entry['train_loss']:.4f}  β {entry['beta_mean']:.3f} (last {entry['beta_last']:.3f})  "
                + " ".join(f"{short.get(k, k)} {v:.4f}" for k, v in entry["objective_losses"].items()))
        if valid_result:
            key = str(self.config["valid_metric"]).lower()
            value = valid_result.get(key)
            if value is not None:
                line += f"  valid {key} {float(value):.4f}"
        self.logger.info(set_color(f"MoRec epoch {entry['epoch']}", "green") + line)

    def _log_tensorboard(self, entry, sig):
        """β, objective losses, sampling weights and signals of an epoch, as TensorBoard scalars (``MoRec/...``)."""
        step = entry["epoch"]
        self.log_scalars("MoRec/beta", {"mean": entry["beta_mean"], "last": entry["beta_last"]}, step)
        self.log_scalars("MoRec/objective_loss", entry["objective_losses"], step)
        for o, weights in entry["sampling_weights"].items():
            self.log_scalars(f"MoRec/sampling_weight/{o}", {f"g{g}": w for g, w in enumerate(weights) if g > 0}, step)
        for o, signal in sig.items():
            if o != "revenue":  # revenue has no signal (zeros)
                self.log_scalars(f"MoRec/signal/{o}", {f"g{g}": int(v) for g, v in enumerate(signal) if g > 0}, step)

    def _sampling_weights(self):
        return {o: [float(w) for w in self.sampler.weights[o]] for o in self.options.objectives}

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        if self.morec_history:
            entry = self.morec_history[-1]
            entry["valid"] = {k: float(v) for k, v in valid_result.items()}
            if entry.get("beta_mean") is not None:
                self._log_epoch_line(entry, valid_result)
                self.log_scalars("MoRec/valid", entry["valid"], entry["epoch"])
        self._last_valid = (valid_score, valid_result)
        return valid_score, valid_result

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._setup(train_data, valid_data)
        self._valid_data = valid_data
        self.eval_collector.data_collect(train_data)
        pretrained = self.evaluate(valid_data, load_best_model=False, show_progress=show_progress)
        self.morec_history = [{"epoch": -1, "beta_mean": None, "sampling_weights": self._sampling_weights(),
                               "valid": {k: float(v) for k, v in pretrained.items()}}]
        self.logger.info(set_color("MoRec: pretrained model valid", "green") + f": {format_result(pretrained)}")
        self._last_valid = None
        best = super().fit(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                           callback_fn=callback_fn)
        if self.options.select == "last" and self._last_valid is not None:
            # UniRec's MoRec runs use early_stop = -1: the model after the last epoch run is the one tested
            if saved:
                self._save_checkpoint(len(self.morec_history) - 2, verbose=False)
            self.best_valid_score, self.best_valid_result = self._last_valid
            best = self._last_valid
        self._write_trajectory()
        return best

    def _write_trajectory(self):
        """``MoRec-<model>-<dataset>-<time>-<pid>-trajectory.json`` (+ ``.png``) in ``results_dir``, rank 0 only."""
        if not self.is_main_process:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"MoRec-{self.config['model']}-{self.config['dataset']}-{stamp}-trajectory.json"
        path = unique_path(os.path.join(self.config["results_dir"], name), ext="-trajectory.json")  # + -<pid>
        base = path[: -len(".json")]
        payload = {"objectives": self.options.objectives, "controller": self.coordinator.name,
                   "model": self.config["model"], "dataset": self.config["dataset"], "title": run_title(self.config),
                   "valid_metric": str(self.config["valid_metric"]).lower(), "epochs": self.morec_history}
        controller = getattr(self.coordinator, "controller", None)
        if controller is not None:  # PID: β's bounds and the accuracy-loss target, for the plot
            payload["beta_bounds"] = [controller.beta_min, controller.beta_max]
            payload["expect_loss"] = controller.expect_loss
        atomic_write_text(base + ".json", json.dumps(payload, indent=1) + "\n")
        self.trajectory_path = base + ".json"
        if self.config["morec_plot"]:
            plot_trajectory(payload, base + ".png")
