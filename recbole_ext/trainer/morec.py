"""``MoRecTrainer`` (``trainer: MoRec``): multi-objective post-training of a trained accuracy model.

MoRec — "A Data-Centric Multi-Objective Learning Framework for Responsible Recommendation Systems"
(arXiv 2310.13260, WWW 2024; original code microsoft/UniRec ``unirec/facility/morec``).

The trainer starts from the checkpoint in ``pretrained_model_file`` (loaded with
:func:`recbole_ext.checkpoint.load_pretrained`, fresh optimiser) and, for every epoch:

1. reads validation signals with the current model — fairness: per fair group the summed per-row
   training loss on validation rows (train mode, uniform negatives) divided by |V| (quirk M1; option
   ``morec_fair_loss_norm: group``) or, with ``morec_fair_metric: hit``, hit@10 per group; alignment:
   share of each alignment group among the top-``morec_align_topk`` (100) items of every validation
   user vs. p*; revenue: no signal (its weights stay at the group-mean prices);
2. moves each objective's group sampling weights one signed-SGD step (:mod:`morec_sampler`);
3. trains S = ceil(|T| / B) steps on (|O| + 1)·B-row batches (one stratified sub-batch per objective,
   then an accuracy sub-batch), combining per-objective losses with the coordinator
   (:mod:`morec_controller`, PI controller or static weights).

Per-row losses are computed here from the model's scores (RecBole models return reduced losses):
``morec_loss: bpr`` (UniRec: mean over negatives of -log(σ(s_ui - s_uj) + 1e-8)), ``bce`` (mean BCE over
1 + n_neg items) — both through ``model.predict`` — or ``ce`` (softmax cross-entropy over all items
through ``model.full_sort_predict``; default for models with ``loss_type = 'CE'`` such as SASRec).
Supported: any general or sequential model whose ``predict`` (bpr/bce) or ``full_sort_predict`` (ce) is
differentiable for training rows (MF-style BPR, LightGCN, NeuMF, SASRec, GRU4Rec, ...). The model's own
regularisers inside ``calculate_loss`` are not added.
"""

import json
import math
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from recbole.data.interaction import Interaction
from recbole.utils import ModelType, set_color

from recbole_ext import checkpoint as ckpt
from recbole_ext.data import morec_data
from recbole_ext.errors import ConfigError, DatasetError
from recbole_ext.trainer.morec_controller import build_coordinator
from recbole_ext.trainer.morec_sampler import OBJECTIVES, MoRecSampler, alignment_signal, fairness_signal
from recbole_ext.trainer.trainer import Trainer

DEFAULTS = {
    "morec_objectives": ["fairness", "alignment", "revenue"],
    "morec_ngroup": 10,
    "morec_alpha": 0.1,
    "morec_lambda": 0.2,
    "morec_expect_loss": 0.2,
    "morec_beta_min": 0.6,
    "morec_beta_max": 1.3,
    "morec_K_p": 0.01,
    "morec_K_i": 0.001,
    "morec_max_iter": 1_000_000,
    "morec_objective_controller": "PID",
    "morec_objective_weights": "[0.3,0.3,0.4]",
    "morec_loss": "auto",
    "morec_neg_num": 1,
    "morec_neg_pop_alpha": 0.0,
    "morec_fair_loss_norm": "total",
    "morec_fair_metric": "loss",
    "morec_align_topk": 100,
    "morec_batch_allocation": "faithful",
    "morec_revenue_bins": "faithful",
    "morec_select": "last",
    "morec_plot": True,
}


def morec_option(config, key):
    return morec_data._cfg(config, key, DEFAULTS[key])


class MoRecTrainer(Trainer):
    """MoRec tri-level post-training (arXiv 2310.13260): adaptive sampler + PI/static coordinator."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self._read_options(config)
        self.pretrained = ckpt.load_pretrained(model, config["pretrained_model_file"], config)
        self.morec_history = []
        self.sampler = None
        self.trajectory_path = None

    # ---------------------------------------------------------------------------------------------
    # configuration
    # ---------------------------------------------------------------------------------------------
    def _read_options(self, config):
        objectives = morec_option(config, "morec_objectives")
        if isinstance(objectives, str):
            objectives = [o.strip() for o in objectives.strip("[]").replace("'", "").split(",") if o.strip()]
        unknown = [o for o in objectives if o not in OBJECTIVES]
        if unknown or not objectives or len(set(objectives)) != len(objectives):
            raise ConfigError(
                f"morec_objectives: unknown or repeated objectives {unknown or objectives}; choose a non-empty list "
                f"of distinct names among {list(OBJECTIVES)} (accuracy is always trained)"
            )
        self.objectives = list(objectives)
        ngroup = morec_option(config, "morec_ngroup")
        if isinstance(ngroup, (list, tuple)) or not float(ngroup).is_integer():
            raise ConfigError(f"morec_ngroup must be one int (revenue groups), got {ngroup!r} (quirk M7: lists are "
                              "not supported)")
        self.ngroup = int(ngroup)
        if "revenue" in self.objectives and self.ngroup <= 0:
            raise ConfigError("morec_ngroup must be > 0 with the revenue objective: one group per item makes every "
                              "sub-batch degenerate (quirk M12)")
        self.alpha = float(morec_option(config, "morec_alpha"))
        self.coordinator = build_coordinator(
            morec_option(config, "morec_objective_controller"),
            self.objectives,
            morec_option(config, "morec_objective_weights"),
            lambda_=morec_option(config, "morec_lambda"),
            expect_loss=morec_option(config, "morec_expect_loss"),
            K_p=morec_option(config, "morec_K_p"),
            K_i=morec_option(config, "morec_K_i"),
            beta_min=morec_option(config, "morec_beta_min"),
            beta_max=morec_option(config, "morec_beta_max"),
            max_iter=morec_option(config, "morec_max_iter"),
        )
        loss = morec_option(config, "morec_loss")
        if loss == "auto":
            loss = "ce" if str(getattr(self.model, "loss_type", "")).upper() == "CE" else "bpr"
        if loss not in ("bpr", "bce", "ce"):
            raise ConfigError(f"morec_loss must be auto, bpr, bce or ce, got {loss!r}")
        self.loss_kind = loss
        self.n_neg = int(morec_option(config, "morec_neg_num"))
        if self.n_neg < 1 and loss != "ce":
            raise ConfigError("morec_neg_num must be >= 1 for the bpr / bce losses")
        self.neg_alpha = float(morec_option(config, "morec_neg_pop_alpha"))
        choices = {
            "morec_fair_loss_norm": ("total", "group"),
            "morec_fair_metric": ("loss", "hit"),
            "morec_batch_allocation": ("faithful", "largest_remainder"),
            "morec_revenue_bins": ("faithful", "array_split"),
            "morec_select": ("last", "best"),
        }
        for key, allowed in choices.items():
            if morec_option(config, key) not in allowed:
                raise ConfigError(f"{key} must be one of {allowed}, got {morec_option(config, key)!r}")
        self.fair_norm = morec_option(config, "morec_fair_loss_norm")
        self.fair_metric = morec_option(config, "morec_fair_metric")
        self.align_topk = int(morec_option(config, "morec_align_topk"))
        self.select = morec_option(config, "morec_select")

    # ---------------------------------------------------------------------------------------------
    # set-up from the data
    # ---------------------------------------------------------------------------------------------
    def _setup(self, train_data, valid_data):
        dataset = train_data._dataset
        config = self.config
        self.iid, self.uid = dataset.iid_field, dataset.uid_field
        self.n_items = dataset.item_num
        self.train_inter = dataset.inter_feat
        train_items = self.train_inter[self.iid].numpy()
        item2group, weights = {}, {}
        for o in self.objectives:
            if o == "revenue":
                price = morec_data.item_weight(dataset, config).numpy()
                faithful = morec_option(config, "morec_revenue_bins") == "faithful"
                groups, means = morec_data.weight_groups(price, self.ngroup, faithful=faithful)
                groups[0] = 0
                item2group[o], weights[o] = groups, means / means.sum()
            else:
                groups = morec_data.item_groups(dataset, config, "fair" if o == "fairness" else "align").numpy()
                share = np.bincount(groups[train_items], minlength=groups.max() + 1).astype(float)
                share[0] = 0.0
                item2group[o], weights[o] = groups, share / len(train_items)
        self.item2group = {o: torch.as_tensor(g) for o, g in item2group.items()}
        self.align_groups = morec_data.item_groups(dataset, config, "align") if "alignment" in self.objectives else None
        if self.align_groups is not None:
            self.p_star = morec_data.expected_align_distribution(dataset, config, self.align_groups).numpy()
        batch_size = int(config["train_batch_size"])
        self.sampler = MoRecSampler(train_items, item2group, weights, self.alpha, batch_size,
                                    morec_option(config, "morec_batch_allocation"), seed=int(config["seed"]))
        if valid_data is None:
            raise ConfigError("MoRec needs validation data for its sampler signals (eval_args split with valid)")
        self.valid_inter = valid_data._dataset.inter_feat
        # user_history = train + valid interactions: negatives never come from it
        users = [self.train_inter[self.uid], self.valid_inter[self.uid]]
        items = [self.train_inter[self.iid], self.valid_inter[self.iid]]
        seq_field = self.iid + config["LIST_SUFFIX"]
        if config["MODEL_TYPE"] == ModelType.SEQUENTIAL and seq_field in self.train_inter.interaction:
            seq = self.train_inter[seq_field]
            users.append(self.train_inter[self.uid].unsqueeze(1).expand_as(seq)[seq > 0])
            items.append(seq[seq > 0])
        keys = torch.cat(users).long() * self.n_items + torch.cat(items).long()
        self.history_keys = torch.unique(keys)
        counts = torch.bincount(torch.cat(items[:2]).long(), minlength=self.n_items).double()
        counts[0] = 0.0
        self.neg_probs = counts.pow(self.neg_alpha) * (counts > 0) if self.neg_alpha > 0 else None
        # negatives: one stream per process under DDP (each process draws for its own rows)
        rank = dist.get_rank() if self.distributed else 0
        self.generator = torch.Generator().manual_seed(int(config["seed"]) + rank)

    # ---------------------------------------------------------------------------------------------
    # per-row losses
    # ---------------------------------------------------------------------------------------------
    def _sample_negatives(self, users, positives, n_neg, uniform=False):
        n = users.shape[0]
        users = users.long().unsqueeze(1).expand(n, n_neg).reshape(-1)
        positives = positives.long().unsqueeze(1).expand(n, n_neg).reshape(-1)

        def draw(size):
            if uniform or self.neg_probs is None:
                return torch.randint(1, self.n_items, (size,), generator=self.generator)
            return torch.multinomial(self.neg_probs, size, replacement=True, generator=self.generator)

        negs = draw(n * n_neg)
        todo = torch.arange(n * n_neg)
        for _ in range(100):  # retries over rejected draws (vectorised), as UniRec
            keys = users[todo] * self.n_items + negs[todo]
            pos = torch.searchsorted(self.history_keys, keys).clamp(max=len(self.history_keys) - 1)
            bad = (self.history_keys[pos] == keys) | (negs[todo] == positives[todo])
            todo = todo[bad]
            if len(todo) == 0:
                break
            negs[todo] = draw(len(todo))
        if len(todo):
            negs[todo] = 0  # UniRec falls back to the padding item
        return negs.view(n, n_neg)

    def row_losses(self, interaction, uniform_negatives=False):
        """Unreduced per-row loss of the model on ``interaction`` (one positive per row)."""
        model = self.model
        if self.loss_kind == "ce":
            scores = model.full_sort_predict(interaction).view(len(interaction), -1)
            scores[:, 0] = -torch.inf
            return F.cross_entropy(scores, interaction[self.iid].long(), reduction="none")
        n = len(interaction)
        negs = self._sample_negatives(interaction[self.uid].cpu(), interaction[self.iid].cpu(), self.n_neg,
                                      uniform=uniform_negatives).to(self.device)
        pos_scores = model.predict(interaction)
        neg_inter = interaction.repeat(self.n_neg)
        neg_inter.interaction[self.iid] = negs.t().reshape(-1)
        neg_scores = model.predict(neg_inter).view(self.n_neg, n).t()
        if self.loss_kind == "bpr":
            return -torch.log(torch.sigmoid(pos_scores.unsqueeze(1) - neg_scores) + 1e-8).mean(dim=1)
        bce = torch.cat([F.softplus(-pos_scores).unsqueeze(1), F.softplus(neg_scores)], dim=1)
        return bce.mean(dim=1)

    def _rows(self, inter, index):
        index = torch.as_tensor(index, dtype=torch.long)
        return Interaction({k: v[index] for k, v in inter.interaction.items()}).to(self.device)

    # ---------------------------------------------------------------------------------------------
    # validation signals
    # ---------------------------------------------------------------------------------------------
    def _topk_pass(self, valid_data):
        """Alignment-group counts of the top-K items of every validation row (+ per-positive hit@10)."""
        self.model.eval()
        k = min(self.align_topk, self.n_items - 1)
        n_align = int(self.align_groups.max()) + 1 if self.align_groups is not None else 1
        align_counts = torch.zeros(n_align, dtype=torch.float64)
        hit_items, hits = [], []
        # multi-process: this process scores its shard of the validation users; rows past
        # ``n_real`` are the DistributedSampler's padding (repeated users) and are skipped
        n_real = self._real_rows(valid_data)
        rows = 0
        with torch.no_grad():
            for batched in valid_data:
                _, scores, positive_u, positive_i = self._full_sort_batch_eval(batched)
                top = torch.topk(scores, k, dim=1).indices.cpu()
                positive_u, positive_i = positive_u.cpu(), positive_i.cpu()
                if n_real is not None:
                    keep = max(0, min(top.shape[0], n_real - rows))
                    rows += top.shape[0]
                    top, mask = top[:keep], positive_u < keep
                    positive_u, positive_i = positive_u[mask], positive_i[mask]
                if self.align_groups is not None:
                    align_counts += torch.bincount(self.align_groups[top].flatten(), minlength=n_align).double()
                if self.fair_metric == "hit":
                    top10 = top[:, :10]
                    hits.append((top10[positive_u] == positive_i.unsqueeze(1)).any(dim=1))
                    hit_items.append(positive_i)
        if self.distributed:  # the counts and hits of every process: the signals of all validation users
            dist.all_reduce(align_counts)
            if self.fair_metric == "hit":
                parts = [None] * dist.get_world_size()
                dist.all_gather_object(parts, (hits, hit_items))
                hits = [h for part in parts for h in part[0]]
                hit_items = [i for part in parts for i in part[1]]
        q = (align_counts / align_counts.sum()).numpy()
        hit = (torch.cat(hits).double(), torch.cat(hit_items)) if hits else None
        return q, hit

    def _real_rows(self, eval_data):
        """Multi-process: the number of this process's rows of ``eval_data`` that are not padding."""
        from torch.utils.data.distributed import DistributedSampler

        sampler = getattr(eval_data, "sampler", None)
        if not self.distributed or not isinstance(sampler, DistributedSampler):
            return None
        return len(range(sampler.rank, len(sampler.dataset), sampler.num_replicas))

    def _fairness_losses(self):
        """Per fair group: summed per-row loss over its validation rows / |V| (M1) or / |V_g|."""
        groups = self.item2group["fairness"]
        n_groups = int(groups.max()) + 1
        self.model.train()  # UniRec runs this pass in train mode (M14)
        sums = torch.zeros(n_groups, dtype=torch.float64)
        n_valid = len(self.valid_inter)
        chunk = max(int(self.config["eval_batch_size"]) // max(self.n_neg, 1), 1)
        with torch.no_grad():
            for start in range(0, n_valid, chunk):
                inter = self._rows(self.valid_inter, torch.arange(start, min(start + chunk, n_valid)))
                losses = self.row_losses(inter, uniform_negatives=True).double().cpu()
                sums.index_add_(0, groups[inter[self.iid].long().cpu()], losses)
        counts = torch.bincount(groups[self.valid_inter[self.iid].long()], minlength=n_groups).double()
        scores = sums / (counts if self.fair_norm == "group" else n_valid)
        scores[counts == 0] = -torch.inf
        scores[0] = -torch.inf
        return scores.numpy()

    def _signals(self, valid_data):
        signals, info = {}, {}
        need_topk = "alignment" in self.objectives or ("fairness" in self.objectives and self.fair_metric == "hit")
        q, hit = self._topk_pass(valid_data) if need_topk else (None, None)
        if "fairness" in self.objectives:
            groups = self.item2group["fairness"]
            if self.fair_metric == "loss":
                scores = self._fairness_losses()
                signals["fairness"] = fairness_signal(scores, higher_is_worse=True)
            else:
                values, items = hit
                g = groups[items]
                n_groups = int(groups.max()) + 1
                sums = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, g, values)
                counts = torch.bincount(g, minlength=n_groups).double()
                scores = (sums / counts.clamp(min=1)).numpy()
                scores[(counts == 0).numpy()] = np.inf
                scores[0] = np.inf  # padding masked
                signals["fairness"] = fairness_signal(scores, higher_is_worse=False)
            info["fairness_worst_group"] = int(np.argmax(signals["fairness"]))
        if "alignment" in self.objectives:
            p_star = self.p_star
            signals["alignment"] = alignment_signal(q, p_star)
            info["alignment_q"] = [round(float(v), 6) for v in q]
        if "revenue" in self.objectives:
            signals["revenue"] = np.zeros(len(self.sampler.weights["revenue"]), dtype=int)
        return signals, info

    # ---------------------------------------------------------------------------------------------
    # training
    # ---------------------------------------------------------------------------------------------
    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        signals, info = self._signals(self._valid_data)
        world, rank = (dist.get_world_size(), dist.get_rank()) if self.distributed else (1, 0)
        if world > 1:  # rank 0's signals for all (the fairness-loss pass draws per-process negatives)
            shared = [(signals, info)]
            dist.broadcast_object_list(shared, src=0)
            signals, info = shared[0]
        self.sampler.update(signals)
        signal_seconds = time.perf_counter() - start
        # the sampler is seeded alike in every process: the same batches everywhere
        batches = torch.from_numpy(self.sampler.epoch_batches())
        n_parts, batch_size = len(self.objectives) + 1, self.sampler.batch_size
        self.model.train()
        total_loss, betas = 0.0, []
        part_sums = torch.zeros(n_parts, dtype=torch.float64)
        for step in range(batches.shape[0]):
            rows = batches[step]
            if world > 1:  # every world-th row of each sub-batch
                rows = rows.view(n_parts, batch_size)[:, rank::world].reshape(-1)
            interaction = self._rows(self.train_inter, rows)
            self.optimizer.zero_grad()
            chunks = self.row_losses(interaction).view(n_parts, -1)
            if world > 1:
                # value: the sub-batch means over all processes (the coordinator's beta sees the
                # global accuracy loss); gradient: this process's rows / batch_size, summed below
                local = chunks.sum(dim=1) / batch_size
                total = local.detach().clone()
                dist.all_reduce(total)
                parts = local + (total - local.detach())
            else:
                parts = chunks.mean(dim=1)
            loss = self.coordinator.combine(list(parts[:-1]), parts[-1])
            self._check_nan(loss)
            loss.backward()
            if world > 1:
                self._sum_gradients()
            if self.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), **self.clip_grad_norm)
            self.optimizer.step()
            total_loss += loss.item()
            betas.append(self.coordinator.beta)
            part_sums += parts.detach().double().cpu()
        entry = {
            "epoch": epoch_idx,
            "beta_mean": float(np.mean(betas)),
            "beta_last": float(betas[-1]),
            "sampling_weights": {o: [float(w) for w in self.sampler.weights[o]] for o in self.objectives},
            "objective_losses": {name: float(v) / batches.shape[0]
                                 for name, v in zip(self.objectives + ["accuracy"], part_sums)},
            "train_loss": total_loss,
            "signal_seconds": round(signal_seconds, 3),
            "train_seconds": round(time.perf_counter() - start, 3),
            **info,
        }
        self.morec_history.append(entry)
        self.logger.info(
            set_color(f"MoRec epoch {epoch_idx}", "green")
            + f": beta {entry['beta_mean']:.4f} (last {entry['beta_last']:.4f}), losses "
            + ", ".join(f"{k} {v:.4f}" for k, v in entry["objective_losses"].items())
            + "; sampling weights "
            + "; ".join(f"{o} {entry['sampling_weights'][o]}" for o in self.objectives)
        )
        return total_loss

    def _sum_gradients(self):
        """All-reduce (sum) the gradients: each process's are those of its rows / batch_size."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            n = p.numel()
            if p.grad is None:
                p.grad = flat[offset : offset + n].view_as(p).clone()
            else:
                p.grad.copy_(flat[offset : offset + n].view_as(p))
            offset += n

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        if self.morec_history:
            self.morec_history[-1]["valid"] = {k: float(v) for k, v in valid_result.items()}
        self._last_valid = (valid_score, valid_result)
        return valid_score, valid_result

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._setup(train_data, valid_data)
        self._valid_data = valid_data
        self.eval_collector.data_collect(train_data)
        self._train_collected = True
        pretrained = self.evaluate(valid_data, load_best_model=False, show_progress=show_progress)
        self.morec_history = [{"epoch": -1, "beta_mean": None, "sampling_weights": {
            o: [float(w) for w in self.sampler.weights[o]] for o in self.objectives},
            "valid": {k: float(v) for k, v in pretrained.items()}}]
        self.logger.info(set_color("MoRec: pretrained model valid", "green") + f": {pretrained}")
        self._last_valid = None
        best = super().fit(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                           callback_fn=callback_fn)
        if self.select == "last" and self._last_valid is not None:
            # UniRec's MoRec runs use early_stop = -1: the model after the last epoch is the one tested
            if saved:
                self._save_checkpoint(len(self.morec_history) - 2, verbose=False)
            self.best_valid_score, self.best_valid_result = self._last_valid
            best = self._last_valid
        self._write_trajectory()
        return best

    # ---------------------------------------------------------------------------------------------
    # trajectory log and plot
    # ---------------------------------------------------------------------------------------------
    def _write_trajectory(self):
        if not self.is_main_process:
            return
        directory = self.config["results_dir"] or os.path.join("saved", "results")
        os.makedirs(directory, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = os.path.join(directory, f"MoRec-{self.config['model']}-{self.config['dataset']}-{stamp}-{os.getpid()}")
        payload = {"objectives": self.objectives, "controller": self.coordinator.name, "epochs": self.morec_history}
        from recbole_ext.io import atomic_write_text

        atomic_write_text(base + "-trajectory.json", json.dumps(payload, indent=1) + "\n")
        self.trajectory_path = base + "-trajectory.json"
        if morec_option(self.config, "morec_plot"):
            self.plot_path = plot_trajectory(payload, base + "-trajectory.png")


def plot_trajectory(payload, path):
    """β, per-objective sampling weights and validation metrics per epoch (epoch -1 = pretrained)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = payload["epochs"]
    objectives = payload["objectives"]
    fig, axes = plt.subplots(1, 2 + len(objectives), figsize=(4.2 * (2 + len(objectives)), 3.4))
    xs = [e["epoch"] for e in epochs if e.get("beta_mean") is not None]
    axes[0].plot(xs, [e["beta_mean"] for e in epochs if e.get("beta_mean") is not None], marker="o")
    axes[0].set_title(f"beta ({payload['controller']}, epoch mean)")
    metric_names = sorted({k for e in epochs for k in e.get("valid", {})})
    xv = [e["epoch"] for e in epochs if "valid" in e]
    for name in metric_names:
        values = [e["valid"].get(name, math.nan) for e in epochs if "valid" in e]
        ref = values[0] if values and values[0] else 1.0
        axes[1].plot(xv, [v / ref for v in values], label=name)
    axes[1].set_title("valid metrics / pretrained")
    axes[1].legend(fontsize=6)
    for ax, o in zip(axes[2:], objectives):
        weights = np.array([e["sampling_weights"][o] for e in epochs])
        for g in range(1, weights.shape[1]):
            ax.plot([e["epoch"] for e in epochs], weights[:, g], label=f"g{g}")
        ax.set_title(f"{o} sampling weights")
    for ax in axes:
        ax.set_xlabel("epoch (-1 = pretrained)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
