"""The trend plot: key measurements per run against the run's start time (UTC), one axis per
unit, each point coloured by its outcome against the limits it had, the limits dashed.

matplotlib with the Agg backend (headless), imported on first use like bench/report/plots.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from pathlib import Path

from bench.history.analysis import TrendSeries

OUTCOME_COLOURS = {"PASS": "tab:green", "FAIL": "tab:red"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def trend_plot(path: Path, series: Sequence[TrendSeries], title: str = "") -> Path:
    plt = _pyplot()
    import matplotlib.dates as mdates
    from matplotlib.lines import Line2D

    units: dict[str, list[tuple[int, TrendSeries]]] = {}
    for i, s in enumerate(series):
        if s.points:
            units.setdefault(s.unit, []).append((i, s))
    empty = [s.spec for s in series if not s.points]
    n = max(1, len(units))
    fig, axes = plt.subplots(n, 1, sharex=True, figsize=(8.0, 1.4 + 2.0 * n), dpi=100, squeeze=False)
    axes = [row[0] for row in axes]
    try:
        for ax, (unit, members) in zip(axes, sorted(units.items())):
            handles = []
            for i, s in members:
                marker = MARKERS[i % len(MARKERS)]
                xs = [p.when for p in s.points]
                ax.plot(xs, [p.value for p in s.points], color="grey", lw=0.8, alpha=0.6)
                ax.scatter(
                    xs,
                    [p.value for p in s.points],
                    marker=marker,
                    s=28,
                    zorder=3,
                    c=[OUTCOME_COLOURS.get(p.outcome, "tab:blue") for p in s.points],
                )
                for side in ("low", "high"):
                    limit = [getattr(p, side) for p in s.points]
                    if len(limit) == 1 and limit[0] is not None:
                        ax.axhline(limit[0], ls="--", lw=0.9, color="tab:gray")
                    elif any(v is not None for v in limit):
                        ax.step(
                            xs,
                            [float("nan") if v is None else v for v in limit],
                            where="post",
                            ls="--",
                            lw=0.9,
                            color="tab:gray",
                        )
                handles.append(Line2D([], [], ls="", marker=marker, color="black", label=s.spec))
            handles += [Line2D([], [], ls="", marker="o", color=c, label=o) for o, c in OUTCOME_COLOURS.items()]
            handles.append(Line2D([], [], ls="--", color="tab:gray", label="limits"))
            ax.legend(handles=handles, fontsize=7, loc="best")
            ax.set_ylabel(unit or "value")
            ax.grid(True, alpha=0.3)
        locator = mdates.AutoDateLocator(tz=UTC)
        axes[-1].xaxis.set_major_locator(locator)
        axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
        axes[-1].set_xlabel("run start (UTC)")
        if not units:
            axes[0].text(0.5, 0.5, "no values to plot", transform=axes[0].transAxes, ha="center")
        note = f" (no values: {', '.join(empty)})" if empty else ""
        axes[0].set_title((title or "key measurements per run") + note, fontsize=9)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
        return path
    finally:
        plt.close(fig)
