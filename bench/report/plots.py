"""PNG plots for the report: the RTC drift fit's residuals, a PSU telemetry trace and the
historical series a device reported over OpenPAYGO Metrics.

matplotlib with the Agg backend (no display needed on a headless rig); imported on first use so
that a suite which draws nothing does not pay for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

SAVE_DPI = 150  # 1050 px across: sharp at the report's 700 px and still legible enlarged on click


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, axes, path: Path) -> Path:
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=SAVE_DPI)
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


MAX_METRICS_AXES = 4


def _metrics_groups(names: Sequence[str], units: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """Variables grouped by unit (or, without one, by what the name says: voltage, current),
    the first groups each on its own axis, the rest together on the last one."""
    groups: dict[str, list[str]] = {}
    for name in names:
        unit = units.get(name.rsplit("/", 1)[-1]) or units.get(name)
        if not unit:
            base = name.rsplit("/", 1)[-1]
            unit = "V" if "voltage" in base else "A" if "current" in base else ""
        groups.setdefault(unit, []).append(name)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0] == "", kv[0]))
    if len(ordered) > MAX_METRICS_AXES:
        rest = [n for _, ns in ordered[MAX_METRICS_AXES - 1 :] for n in ns]
        ordered = ordered[: MAX_METRICS_AXES - 1] + [("various", rest)]
    return ordered


def _time_axis(span_s: float) -> tuple[float, str]:
    """Seconds per x unit and its name: a virtual rig's minute of rows in seconds, a product's
    day in hours."""
    if span_s < 180.0:
        return 1.0, "seconds"
    if span_s < 3 * 3600.0:
        return 60.0, "minutes"
    return 3600.0, "hours"


def metrics_series_plot(
    path: Path, series: Mapping[str, Sequence[tuple[float, float]]], title: str, units: Mapping[str, str] | None = None
) -> Path:
    """Historical Metrics series (variable -> (UNIX time, value)) on stacked axes sharing time,
    one axis per unit (`units`: variable -> unit, e.g. from the data format; without it, names
    with "voltage" go to V and "current" to A), time since the first row on the x axis."""
    plt = _pyplot()
    groups = _metrics_groups(sorted(series), units or {})
    n = max(1, len(groups))
    fig, axes = plt.subplots(n, 1, sharex=True, figsize=(7.0, 1.2 + 1.6 * n), dpi=100, squeeze=False)
    axes = [row[0] for row in axes]
    try:
        points = [p for name in series for p in series[name]]
        t0 = min((t for t, _ in points), default=0.0)
        span = max((t for t, _ in points), default=0.0) - t0
        scale, unit_name = _time_axis(span)
        for ax, (unit, names) in zip(axes, groups):
            for name in names:
                rows = series[name]
                ax.plot([(t - t0) / scale for t, _ in rows], [v for _, v in rows], marker=".", ms=3, lw=0.8, label=name)
            ax.set_ylabel(unit or "value")
            ax.legend(fontsize=7, loc="best")
        axes[0].set_title(title, fontsize=9)
        axes[-1].set_xlabel(f"{unit_name} since the first row")
        return _save(fig, axes, path)
    finally:
        plt.close(fig)
