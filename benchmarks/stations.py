"""Wall time of N virtual stations run in parallel from one command, against one station alone.

Why it exists (issue #17, item 1): `paygo-bench run --rig a --rig b ...` runs one isolated
`paygo-bench run` per station at once (bench/lab, docs/lab.md). A station's run mostly waits on
its instruments on a real rig, so N stations should take about the time of one; on the virtual
rig the simulator and the bench share this machine's cores, so the curve shows where the cores
run out. Each row is one `paygo-bench run --lab` of N stations (virtual rigs, one station id
each), timed from start to exit; the ratio is against the one-station row of the same run.
Every station must PASS, else the row says so (a timing of a broken run means nothing).

    python benchmarks/stations.py [--counts 1,2,4,8] [--suite quick] [--repeat 1]

Figures, with their date and machine: docs/lab.md ("How long N stations take").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_lab(n: int, suite: str, tmp: Path) -> tuple[float, dict]:
    """One lab run of n virtual stations (a lab file, so one station runs as a lab too): its
    wall time and its lab.json."""
    lab = tmp / "lab.toml"
    stations = []
    for i in range(n):
        (tmp / f"station-{i}.toml").write_text(f'[station]\nid = "bench-{i}"\n', encoding="utf-8")
        stations.append(f'[[station]]\nrig = "station-{i}.toml"\n')
    lab.write_text("\n".join(stations), encoding="utf-8")
    out = tmp / f"lab-{n}"
    argv = [sys.executable, "-m", "bench.cli", "run", "--lab", str(lab), "--suite", suite, "--report-dir", str(out)]
    start = time.monotonic()
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.monotonic() - start
    return wall, json.loads((out / "lab.json").read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,2,4,8", help="station counts, comma-separated (default 1,2,4,8)")
    parser.add_argument("--suite", default="quick", help="the suite each station runs (default quick)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per count; the median is shown (default 1)")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="paygo-stations-") as scratch:
        for n in counts:
            walls, station_walls, verdicts = [], [], set()
            for r in range(args.repeat):
                tmp = Path(scratch) / f"{n}-{r}"
                tmp.mkdir()
                wall, lab = run_lab(n, args.suite, tmp)
                walls.append(wall)
                station_walls += [s["wall_s"] for s in lab["stations"]]
                verdicts |= {s["verdict"] for s in lab["stations"]}
            rows.append((n, statistics.median(walls), statistics.median(station_walls), sorted(verdicts)))
    one = next((wall for n, wall, _, _ in rows if n == 1), rows[0][1])
    print(
        f"N virtual stations in parallel, --suite {args.suite}, median of {args.repeat}\n"
        f"{date.today().isoformat()}, CPython {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'stations':>8}  {'wall s':>7}  {'x one':>6}  {'station s':>9}  {'s/station':>9}  verdicts")
    for n, wall, station, verdicts in rows:
        print(f"{n:>8}  {wall:>7.1f}  {wall / one:>6.2f}  {station:>9.1f}  {wall / n:>9.2f}  {', '.join(verdicts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
