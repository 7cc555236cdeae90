"""PNG plots for the report: the RTC drift fit's residuals and a PSU telemetry trace.

matplotlib with the Agg backend (no display needed on a headless rig); imported on first use so
that a suite which draws nothing does not pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, axes, path: Path) -> Path:
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def drift_residual_plot(
    path: Path,
    residuals: Sequence[tuple[float, float]],
    title: str,
    bounds_s: Sequence[float] | None = None,
) -> Path:
    """Residuals of the drift fit (ms) against time since the first point (s); with bounds_s
    (each point's hard timing bound) as error bars. Scatter is noise; a trend or a step means
    temperature, an RTC correction cycle or a host clock being slewed (docs/drift.md)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 3.2), dpi=100)
    try:
        if residuals:
            t0 = residuals[0][0]
            xs = [h - t0 for h, _ in residuals]
            ys = [r * 1e3 for _, r in residuals]
            if bounds_s is not None and len(bounds_s) == len(ys):
                ax.errorbar(xs, ys, yerr=[b * 1e3 for b in bounds_s], fmt="o", ms=3, lw=0.8, capsize=2)
            else:
                ax.plot(xs, ys, "o", ms=3)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlabel("host time since first point (s)")
        ax.set_ylabel("residual (ms)")
        ax.set_title(title, fontsize=9)
        return _save(fig, (ax,), path)
    finally:
        plt.close(fig)


def supply_trace_plot(path: Path, rows: Sequence[tuple[float, str, float, float]], title: str) -> Path:
    """Voltage and current read back from the PSU (rows of t_s, label, volts, amps) on two axes
    sharing time."""
    plt = _pyplot()
    fig, (av, ai) = plt.subplots(2, 1, sharex=True, figsize=(7.0, 3.8), dpi=100)
    try:
        ts = [r[0] for r in rows]
        av.step(ts, [r[2] for r in rows], where="post", marker=".", ms=3, lw=0.8)
        ai.step(ts, [r[3] * 1e3 for r in rows], where="post", marker=".", ms=3, lw=0.8, color="tab:orange")
        av.set_ylabel("V")
        ai.set_ylabel("mA")
        ai.set_xlabel("time since first reading (s)")
        av.set_title(title, fontsize=9)
        return _save(fig, (av, ai), path)
    finally:
        plt.close(fig)
