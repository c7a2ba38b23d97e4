"""The plot of a MoRec trajectory (the ``epochs`` of ``MoRec-...-trajectory.json``)."""

import math

import numpy as np

from recbole_ext.io import atomic_write


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
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=80))
    plt.close(fig)
