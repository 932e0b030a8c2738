"""The files of a calibration's results folder (every one written atomically).

- ``estimates.csv``: parameter, estimate, se, ci_lower, ci_upper, bounds, at_bound, start.
- ``moments.csv``: target, its se, the model's value, the error in target SEs, simulation sd, source.
- ``jacobian.csv``: G (moments x free parameters); ``weights.csv``: W; ``moments_cov.csv``:
  Omega + Omega_sim; ``cov.csv``: covariance of the estimates; ``sensitivity.csv``: Lambda
  (parameters x moments); ``delta_gini.csv``: the Delta Gini decomposition by target.
- ``report.json``: everything, machine-readable (inf and nan as strings): the configuration,
  seed, input files with their SHA-256 and package versions (``--replay`` repeats the run).
- ``timing.json``: wall time and date (the one file that differs when a run is repeated).
- ``fit.png`` (targets with SE bars and the model) and ``sensitivity.png`` (heatmap of Lambda in
  units of parameter SE per target SE).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from estimation.runfiles import atomic_write_bytes, atomic_write_json, atomic_write_text, to_jsonable
from jaxmodel import MOMENT_NAMES


def _csv(frame: pd.DataFrame, path: Path, index: bool) -> None:
    atomic_write_text(path, frame.to_csv(index=index, float_format="%.17g"))


def write_results(result, folder: Path) -> None:
    """Write every results file of ``result`` into ``folder``."""
    folder = Path(folder)
    names = list(result.free.names)
    _csv(pd.DataFrame(result.estimates_table()), folder / "estimates.csv", index=False)
    _csv(pd.DataFrame(result.moments_table()), folder / "moments.csv", index=False)
    _csv(pd.DataFrame(result.jac, index=MOMENT_NAMES, columns=names).rename_axis("moment"), folder / "jacobian.csv", True)
    _csv(pd.DataFrame(result.weights, index=MOMENT_NAMES, columns=MOMENT_NAMES).rename_axis("moment"),
         folder / "weights.csv", True)
    _csv(pd.DataFrame(result.moments_cov, index=MOMENT_NAMES, columns=MOMENT_NAMES).rename_axis("moment"),
         folder / "moments_cov.csv", True)
    _csv(pd.DataFrame(result.cov, index=names, columns=names).rename_axis("parameter"), folder / "cov.csv", True)
    _csv(pd.DataFrame(result.sensitivity, index=names, columns=MOMENT_NAMES).rename_axis("parameter"),
         folder / "sensitivity.csv", True)
    if result.decomposition is not None:
        _csv(pd.DataFrame(result.decomposition["targets"]), folder / "delta_gini.csv", index=False)
    atomic_write_bytes(folder / "fit.png", fit_figure(result))
    atomic_write_bytes(folder / "sensitivity.png", sensitivity_figure(result))
    atomic_write_json(folder / "report.json", to_jsonable(result.to_report()))
    # Wall time and date apart from the results, so that every other file is bit-identical when
    # the same run is repeated.
    atomic_write_json(folder / "timing.json", result.timing_record())


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def fit_figure(result) -> bytes:
    """Targets with +-1.96 SE bars and the model's moments at the estimate, moment by moment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MOMENT_NAMES), figsize=(13, 3.2))
    for i, (ax, name) in enumerate(zip(axes, MOMENT_NAMES)):
        target, se, model = result.targets.values[i], result.targets.se[i], result.model_moments[i]
        ax.errorbar([0], [target], yerr=[1.96 * se], fmt="o", color="black", capsize=4, label="target +- 1.96 se")
        ax.plot([0], [model], "D", color="tab:red", label="model at estimate")
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.set_xticks([])
        ax.set_title(f"m{i + 1}\n{name}", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Fit of the targets (criterion {result.criterion:.3f}; regime: {result.regime})", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def sensitivity_figure(result) -> bytes:
    """Heatmap of Lambda scaled to parameter SEs per target SE: Lambda_ji se_i / se(theta_j)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.free.names)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = result.sensitivity * result.targets.se[None, :] / result.se[:, None]
    fig, ax = plt.subplots(figsize=(7.5, 0.6 * len(names) + 1.8))
    finite = np.isfinite(scaled)
    limit = float(np.max(np.abs(scaled[finite]))) if finite.any() else 1.0
    image = ax.imshow(np.where(finite, scaled, 0.0), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(MOMENT_NAMES)), [f"m{i + 1}\n{n}" for i, n in enumerate(MOMENT_NAMES)], fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for j in range(len(names)):
        for i in range(len(MOMENT_NAMES)):
            text = f"{scaled[j, i]:.2f}" if finite[j, i] else "n/a"
            ax.text(i, j, text, ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="parameter SEs per target SE")
    ax.set_title("Sensitivity (Andrews-Gentzkow-Shapiro): Lambda scaled by the SEs", fontsize=10)
    fig.tight_layout()
    return _png(fig)
