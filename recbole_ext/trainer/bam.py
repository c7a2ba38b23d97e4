"""Trainer of the multi-interest models (MIND / ComiRec / REMI, with or without BaM).

RecBole's training loop, plus BaM's balance diagnostic: after every epoch it logs the share of the
training targets routed to each interest — by the selection rule in use (``selected``: argmax for
``hard``, a sample for BaM) and by the dominant interest (``argmax``) — keeps the history in
``trainer.routing_history`` and saves a plot plus a JSON of the history (``routing_plot: True``) next to the checkpoint
(``<checkpoint>-routing.png`` / ``-routing.json``).
"""

import json
import os
from logging import getLogger

import torch

from recbole_ext import distributed
from recbole_ext.io import atomic_write, atomic_write_text
from recbole_ext.trainer.trainer import Trainer


class BaMTrainer(Trainer):
    def __init__(self, config, model):
        super().__init__(config, model)
        self.routing_history = []  # one dict per epoch: epoch, selected [K], argmax [K]
        self.routing_plot = bool(config["routing_plot"])
        self.routing_plot_file = os.path.splitext(self.saved_model_file)[0] + "-routing.png"
        self.routing_json_file = os.path.splitext(self.saved_model_file)[0] + "-routing.json"

    def _build_optimizer(self, **kwargs):
        """RecBole's optimiser; plain Adam uses PyTorch's fused kernel (``fused_adam: True``, same update
        rule, one pass over each parameter instead of ~10 — the embedding table dominates the step)."""
        learner = kwargs.get("learner", self.learner)
        if str(learner).lower() == "adam" and self.config["fused_adam"]:
            params = kwargs.pop("params", self.model.parameters())
            lr = kwargs.pop("learning_rate", self.learning_rate)
            weight_decay = kwargs.pop("weight_decay", self.weight_decay)
            try:
                return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
            except (RuntimeError, TypeError):  # no fused kernel for this device / dtype
                params = self.model.parameters()
                return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        return super()._build_optimizer(**kwargs)

    def _full_sort_batch_eval(self, batched_data):
        """RecBole's full-sort batch; a two-stage scorer (``eval_scoring: bf16_rescore``) is told which
        (row, item) pairs the trainer will set to -inf, so that it picks its candidates among the rest."""
        if getattr(self.model, "eval_scoring", "fp32") != "bf16_rescore":  # only that scorer reads eval_exclude
            return super()._full_sort_batch_eval(batched_data)
        history_index = batched_data[1]
        if history_index is not None and self.device is not None:
            history_index = tuple(t.to(self.device) for t in history_index)
        self.model.eval_exclude = history_index
        try:
            return super()._full_sort_batch_eval(batched_data)
        finally:
            self.model.eval_exclude = None

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        if hasattr(self.model, "pop_routing_share"):
            selected, argmax = self.model.pop_routing_share()
            if self.distributed:  # shares of this process's rows -> of all rows (equal row counts per process)
                selected, argmax = distributed.mean_over_processes(selected), distributed.mean_over_processes(argmax)
            self.routing_history.append({"epoch": epoch_idx, "selected": selected, "argmax": argmax})
            fmt = lambda xs: "[" + ", ".join(f"{x:.3f}" for x in xs) + "]"  # noqa: E731
            getLogger().info(
                f"epoch {epoch_idx} routing share ({self.model.selection}): selected {fmt(selected)}, "
                f"argmax {fmt(argmax)}"
            )
            if self.routing_plot and self.is_main_process:
                history = {"selection": self.model.selection, "epochs": self.routing_history}
                atomic_write_text(self.routing_json_file, json.dumps(history, indent=1))
                save_routing_plot(self.routing_history, self.routing_plot_file, self.model.selection)
        return loss


def save_routing_plot(history, path, selection="hard"):
    """Plot the per-interest share of training targets over epochs (selected: solid, argmax: dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    k = len(history[0]["selected"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i in range(k):
        line = ax.plot(epochs, [h["selected"][i] for h in history], marker="o", label=f"interest {i} selected")
        ax.plot(epochs, [h["argmax"][i] for h in history], ls="--", color=line[0].get_color(), label=f"interest {i} argmax")
    ax.axhline(1.0 / k, color="grey", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("share of training targets")
    ax.set_title(f"routing share (selection = {selection})")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)
    return path
