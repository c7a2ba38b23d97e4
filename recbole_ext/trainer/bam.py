"""Trainer of the multi-interest models (MIND / ComiRec / REMI, with or without BaM).

RecBole's training loop, plus BaM's balance diagnostic: after every epoch it logs the share of the
training targets routed to each interest — by the selection rule in use (``selected``: argmax for
``hard``, a sample for BaM) and by the dominant interest (``argmax``) — keeps the history in
``trainer.routing_history`` and saves a plot plus a JSON of the history (``routing_plot: True``) next to the checkpoint
(``<checkpoint>-routing.png`` / ``-routing.json``; the plot titled with the run, e.g. "BaM_REMI on ml-100k"); the
shares also go to TensorBoard (``BaM/routing_selected/interest<i>``, ``BaM/routing_argmax/interest<i>``; docs/outputs.md).
"""

import json
import os
from logging import getLogger

import torch

from recbole_ext import distributed
from recbole_ext.io import atomic_write, atomic_write_text
from recbole_ext.trainer.trainer import Trainer, run_title


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
            for kind, shares in (("selected", selected), ("argmax", argmax)):
                self.log_scalars(f"BaM/routing_{kind}", {f"interest{i}": float(x) for i, x in enumerate(shares)},
                                 epoch_idx)
            fmt = lambda xs: "[" + ", ".join(f"{x:.3f}" for x in xs) + "]"  # noqa: E731
            getLogger().info(
                f"epoch {epoch_idx} routing share ({self.model.selection}): selected {fmt(selected)}, "
                f"argmax {fmt(argmax)}"
            )
            if self.routing_plot and self.is_main_process:
                history = {"selection": self.model.selection, "title": run_title(self.config),
                           "epochs": self.routing_history}
                atomic_write_text(self.routing_json_file, json.dumps(history, indent=1))
                save_routing_plot(self.routing_history, self.routing_plot_file, self.model.selection,
                                  title=run_title(self.config))
        return loss


def save_routing_plot(history, path, selection="hard", title=None):
    """Plot the per-interest share of training targets over epochs (selected: solid, argmax: dashed, 1/K: grey);
    ``title``: the run (e.g. ``MIND on ml-100k``, :func:`recbole_ext.trainer.trainer.run_title`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    k = len(history[0]["selected"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    handles = []
    for i in range(k):
        line = ax.plot(epochs, [h["selected"][i] for h in history], marker="o", ms=4, lw=1.8)[0]
        ax.plot(epochs, [h["argmax"][i] for h in history], ls="--", lw=1.2, color=line.get_color())
        handles.append(Line2D([], [], color=line.get_color(), marker="o", ms=4, lw=1.8, label=f"interest {i}"))
    ax.axhline(1.0 / k, color="grey", lw=0.8)
    handles += [Line2D([], [], color="black", lw=1.8, label="selected"),
                Line2D([], [], color="black", lw=1.2, ls="--", label="argmax (dominant)"),
                Line2D([], [], color="grey", lw=0.8, label=f"balanced (1/{k})")]
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("share of training targets")
    ax.set_ylim(0, max(1.0 / k, max(max(h["selected"] + h["argmax"]) for h in history)) * 1.1)
    ax.grid(alpha=0.3)
    head = f"{title} — " if title else ""
    ax.set_title(f"{head}routing share per interest (selection = {selection})", fontsize=11)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"))
    plt.close(fig)
    return path
