"""Every figure of the results folders, as PNG bytes (computation lives elsewhere; this draws).

- calibrate: ``fit_figure``, ``sensitivity_figure`` (from the view, ``estimation.output.view``);
- regimes: ``regime_map_figure``, ``technology_map_figure``;
- oews: ``binned_scatter_figure``;
- panel-power: ``power_figure``.
"""

from __future__ import annotations

import io
import math
import textwrap
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from estimation.empirics.occupations import OUTCOMES, binned
from estimation.empirics.panel import DESCRIPTIONS

if TYPE_CHECKING:
    from estimation.output.view import Calibration
    from estimation.regimes import Boundary


def pyplot():
    """matplotlib.pyplot on the Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_png(fig, dpi: int = 130) -> bytes:
    """The figure as PNG bytes (tight bounding box); the figure is closed."""
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def fit_figure(view: Calibration) -> bytes:
    """Targets with +-1.96 SE bars and the model's moments at the estimate, moment by moment."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(view.moments), figsize=(13, 3.2))
    for i, (ax, m) in enumerate(zip(axes, view.moments)):
        ax.errorbar([0], [m.target], yerr=[1.96 * m.se], fmt="o", color="black", capsize=4, label="target +- 1.96 se")
        ax.plot([0], [m.model], "D", color="tab:red", label="model at estimate")
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.set_xticks([])
        ax.set_title(f"m{i + 1}\n{m.moment}" + ("" if m.targeted else "\n(not targeted)"), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Fit of the targets (criterion {view.criterion:.3f}; regime: {view.regime})", fontsize=10)
    fig.tight_layout()
    return to_png(fig)


def sensitivity_figure(view: Calibration) -> bytes:
    """Heatmap of Lambda scaled to parameter SEs per target SE: Lambda_ji se_i / se(theta_j)."""
    plt = pyplot()

    names, moments, scaled = list(view.sensitivity.parameters), view.sensitivity.moments, view.sensitivity.scaled
    fig, ax = plt.subplots(figsize=(7.5, 0.6 * len(names) + 1.8))
    finite = np.isfinite(scaled)
    limit = float(np.max(np.abs(scaled[finite]))) if finite.any() else 1.0
    image = ax.imshow(np.where(finite, scaled, 0.0), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    # Moment names wrapped onto short lines (underscores as spaces), so neighbours never overlap.
    labels = [f"m{i + 1}\n" + "\n".join(textwrap.wrap(n.replace("_", " "), 12)) for i, n in enumerate(moments)]
    ax.set_xticks(range(len(moments)), labels, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for j in range(len(names)):
        for i in range(len(moments)):
            text = f"{scaled[j, i]:.2f}" if finite[j, i] else "n/a"
            ax.text(i, j, text, ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="parameter SEs per target SE")
    ax.set_title("Sensitivity (Andrews-Gentzkow-Shapiro): Lambda scaled by the SEs", fontsize=10)
    fig.tight_layout()
    return to_png(fig)


def regime_map_figure(xi: np.ndarray, gini_K: np.ndarray, values: np.ndarray, boundaries: list[Boundary],
                      marker: tuple[float, float] | None = None) -> bytes:
    """Heatmap of Delta Gini over (xi, Gini(K)) with the boundary curve of each structure."""
    plt = pyplot()
    from matplotlib.colors import TwoSlopeNorm

    fig, ax = plt.subplots(figsize=(6.8, 5.2))
    limit = float(np.nanmax(np.abs(values))) or 1e-6
    mesh = ax.pcolormesh(xi, gini_K, values.T, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -limit, limit), shading="nearest")
    fig.colorbar(mesh, ax=ax, label="Delta Gini (after AI minus before)")
    ax.contour(xi, gini_K, values.T, levels=[0.0], colors="black", linewidths=0.8, linestyles=":")
    ax.plot([], [], ":", color="black", lw=0.8, label="Delta Gini = 0 at the map's own (eta0, eta1)")
    styles = {"commodity-leaning": ("tab:green", "-"), "proprietary-leaning": ("tab:purple", "--")}
    for b in boundaries:
        colour, style = styles.get(b.structure, ("black", "-"))
        ax.plot(b.xi, b.gini_K, style, color=colour, lw=2.2,
                label=f"boundary, {b.structure} (eta0={b.eta0:g}, eta1={b.eta1:g})")
    if marker is not None:
        ax.plot(*marker, "k*", ms=12, label="parameters of the map")
    ax.set_xlabel("rent sharing xi")
    ax.set_ylabel("asset concentration Gini(K)")
    ax.set_title("Two regimes: Delta Gini > 0 (red) concentrating, < 0 (blue) equalizing", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return to_png(fig)


def technology_map_figure(eta1: np.ndarray, xi: np.ndarray, values: np.ndarray) -> bytes:
    """Heatmap of Delta Gini over (eta1, xi): the technology structure alone crosses the boundary."""
    plt = pyplot()
    from matplotlib.colors import TwoSlopeNorm

    fig, ax = plt.subplots(figsize=(6.8, 5.2))
    limit = float(np.nanmax(np.abs(values))) or 1e-6
    mesh = ax.pcolormesh(eta1, xi, values.T, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -limit, limit), shading="nearest")
    fig.colorbar(mesh, ax=ax, label="Delta Gini")
    if np.nanmin(values) < 0 < np.nanmax(values):
        ax.contour(eta1, xi, values.T, levels=[0.0], colors="black", linewidths=1.6)
    ax.set_xlabel("proprietary AI access eta1")
    ax.set_ylabel("rent sharing xi")
    ax.set_title("Technology structure and rent sharing: the boundary Delta Gini = 0 (black)", fontsize=9)
    return to_png(fig)


def binned_scatter_figure(changes: pd.DataFrame, grouped: pd.DataFrame, table: pd.DataFrame,
                          outcome: str = "d_log_median_wage", title: str = "") -> bytes:
    """Binned scatter of ``outcome`` against each exposure measure, with the WLS line."""
    plt = pyplot()

    names = list(grouped.columns)
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        points = binned(changes, grouped[name], outcome)
        ax.scatter(points["x"], points["y"], s=14, color="tab:blue")
        fit = table[(table["measure"] == name) & (table["outcome"] == outcome) & (~table["fixed_effects"])]
        if len(fit):
            r = fit.iloc[0]
            mean_y = np.average(points["y"], weights=points["employment"])
            xs = np.array([points["x"].min(), points["x"].max()])
            ax.plot(xs, mean_y + r["coef"] * xs, color="tab:red", lw=1)
            ax.set_title(f"{name}\nb = {r['coef']:+.4f} (se {r['se']:.4f})", fontsize=7)
        ax.set_xlabel("exposure (sd)", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title or OUTCOMES[outcome], fontsize=9)
    fig.tight_layout()
    return to_png(fig, dpi=120)


def power_figure(sizes, curves: dict, needed: dict) -> bytes:
    """Power of the one-sided 5% test of each hypothesis against the panel size."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    for h, power in curves.items():
        label = f"{h}: {DESCRIPTIONS[h]}"
        if math.isfinite(needed[h]):
            label += f" (80% at n = {needed[h]:,.0f})"
        ax.plot(sizes, power, marker="o", ms=3, label=label)
    ax.axhline(0.8, color="grey", ls="--", lw=0.8)
    ax.axhline(0.05, color="grey", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("panel size n (workers; applicants per period for H3; firms for H4)")
    ax.set_ylabel("power of the one-sided 5% test")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=6.5, loc="lower right")
    ax.set_title("The within-task panel that would test the model", fontsize=9)
    return to_png(fig)
