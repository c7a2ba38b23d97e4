"""The plot of a MoRec trajectory (the ``epochs`` of ``MoRec-...-trajectory.json``).

One 10 x 8 in figure (120 dpi): on the left β per epoch, the objectives' mean sub-batch losses and the
validation metrics as a change against the pretrained model; on the right one panel per objective with the
sampling weight of every item group. Epoch ``-1`` (tick ``pre``) is the pretrained model; legends sit outside
the curves.
"""

import math

import numpy as np

from recbole_ext.io import atomic_write

FIGSIZE = (10, 8)
DPI = 120


def _epoch_axis(ax, epochs):
    """Integer epoch ticks; -1 reads ``pre`` (the pretrained model)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(max(len(epochs), 2), 10)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: "pre" if round(x) == -1 else f"{int(round(x))}"))
    if epochs:
        ax.set_xlim(min(epochs) - 0.3, max(epochs) + 0.3)
    ax.grid(alpha=0.3)


def plot_trajectory(payload, path):
    """β, objective losses, validation metrics and per-objective group sampling weights per epoch (epoch -1 =
    pretrained) as a PNG at ``path`` (written atomically); returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = payload["epochs"]
    objectives = list(payload["objectives"])
    trained = [e for e in epochs if e.get("beta_mean") is not None]
    all_x = [e["epoch"] for e in epochs]
    fig = plt.figure(figsize=FIGSIZE, dpi=DPI)
    n_right = max(len(objectives), 1)
    grid = fig.add_gridspec(3 * n_right, 2, width_ratios=[1.0, 1.0], hspace=2.4 if n_right > 1 else 0.7, wspace=0.72)
    left = [fig.add_subplot(grid[i * n_right:(i + 1) * n_right, 0]) for i in range(3)]
    right = [fig.add_subplot(grid[3 * i:3 * (i + 1), 1]) for i in range(len(objectives))]

    # β (the coordinator's accuracy weight)
    ax = left[0]
    xs = [e["epoch"] for e in trained]
    ax.plot(xs, [e["beta_mean"] for e in trained], marker="o", lw=2, label="epoch mean")
    if trained and "beta_last" in trained[0]:
        ax.plot(xs, [e["beta_last"] for e in trained], marker="s", ms=4, ls="--", lw=1.2, label="last step")
    for bound in payload.get("beta_bounds") or []:
        ax.axhline(bound, color="grey", lw=0.8, ls=":")
    if payload.get("beta_bounds"):
        ax.plot([], [], color="grey", lw=0.8, ls=":", label="bounds")
        low, high = payload["beta_bounds"]
        ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    ax.set_title(f"β, accuracy weight ({payload.get('controller', '?')} controller)", fontsize=10)
    ax.set_ylabel("β")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    _epoch_axis(ax, all_x)

    # objective losses (mean per sub-batch)
    ax = left[1]
    names = list(trained[0].get("objective_losses", {})) if trained else []
    target = payload.get("expect_loss")
    for name in names:
        ax.plot(xs, [e["objective_losses"].get(name, math.nan) for e in trained], marker="o", ms=4, label=name)
    ax.set_title("objective losses (mean per sub-batch)" + (f"; PID target {target:g}" if target is not None else ""),
                 fontsize=10)
    ax.set_ylabel("loss")
    if target is not None and names:
        top = max(max(e["objective_losses"].values()) for e in trained)
        if target <= 1.5 * top:  # a line far above the curves would flatten them: the title says it then
            ax.axhline(target, color="grey", lw=0.8, ls=":", label="PID target (accuracy)")
    if names:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    _epoch_axis(ax, all_x)

    # validation metrics, relative to the pretrained model
    ax = left[2]
    with_valid = [e for e in epochs if "valid" in e]
    metric_names = sorted({k for e in with_valid for k in e["valid"]})
    xv = [e["epoch"] for e in with_valid]
    chosen = payload.get("valid_metric")
    skipped = []
    for name in metric_names:
        values = np.array([e["valid"].get(name, math.nan) for e in with_valid], dtype=float)
        if not values.size or not np.isfinite(values[0]) or values[0] == 0:
            skipped.append(name)  # no relative change from a pretrained value of 0
            continue
        ax.plot(xv, 100.0 * (values / values[0] - 1.0), marker="o", ms=3, lw=2.6 if name == chosen else 1.2,
                label=f"{name} ({values[0]:.3g})")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_title("valid metrics: % change vs pretrained", fontsize=10)
    ax.set_ylabel("% change")
    ax.set_xlabel("epoch (pre = pretrained model)")
    if len(skipped) < len(metric_names):
        ax.legend(title="metric (pretrained)", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize=7, frameon=False, handlelength=1.2, labelspacing=0.25)
    if skipped:
        ax.text(0.0, -0.3, "not shown (pretrained value 0): " + ", ".join(skipped), transform=ax.transAxes,
                fontsize=6.5, color="dimgrey", va="top", wrap=True)
    _epoch_axis(ax, all_x)

    # sampling weights of each objective's item groups (group 0 = padding, never sampled)
    for ax, o in zip(right, objectives):
        weights = np.array([e["sampling_weights"][o] for e in epochs], dtype=float)
        n_groups = weights.shape[1] - 1
        colours = plt.get_cmap("viridis" if n_groups > 10 else "tab10")(np.linspace(0, 1, max(n_groups, 1)) if n_groups > 10
                                                                        else np.arange(max(n_groups, 1)))
        for g in range(1, weights.shape[1]):
            ax.plot(all_x, weights[:, g], color=colours[g - 1], lw=1.4, label=f"{g}")
        ax.set_title(f"{o}: sampling weight per group", fontsize=10)
        ax.set_ylabel("weight")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.05), fontsize=6.5, frameon=False,
                  ncol=2 if n_groups > 6 else 1, handlelength=1.0, columnspacing=0.6, labelspacing=0.2,
                  title="item group", title_fontsize=6.5)
        _epoch_axis(ax, all_x)
    if right:
        right[-1].set_xlabel("epoch (pre = initial weights)")

    title = payload.get("title") or " ".join(str(payload[k]) for k in ("model", "dataset") if payload.get(k))
    controller = f" ({payload['controller']} controller)" if payload.get("controller") else ""
    fig.suptitle((f"MoRec trajectory — {title}" if title else "MoRec trajectory") + controller, fontsize=13)
    fig.subplots_adjust(left=0.08, right=0.87, top=0.91, bottom=0.11)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    plt.close(fig)
    return path
