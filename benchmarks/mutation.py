"""The device suite's mutation score: the suite run against mutated copies of the simulator's
token code, each mutant running as the simulated device's firmware (issue 13, item 5).

Why a small AST mutator of our own (benchmarks/mutation_ops.py) and not mutmut or cosmic-ray:
both rewrite the module in place in the checkout and run the tests in-process or with their own
runner, while here the mutant must be the *simulator's* code, running in the separate process
the virtual rig starts (`python -m bench.sim`), with the bench itself and its model unmutated.
So each mutant goes into an overlay directory put first on the suite child's PYTHONPATH, whose
`sitecustomize.py` serves the mutant for that one module in the simulator process only
(benchmarks/mutation_overlay.py); the checkout is never written.

Per mutant: `python -m pytest <device suite files> -x --walk-seed 1` (-x: the first failure
kills it; the token files first, so a killed mutant costs seconds, and the random walk last, so a
mutant the walk kills is one no other device test caught). Outcomes: killed (by the first test
that failed), killed at start-up (the mutant raised while imported), killed by timeout (the
device hung the suite), survived. Mutants on lines the good device's suite never runs (a line
tracer in the simulator during one good run) are not run: listed as "not reached".

    python benchmarks/mutation.py [--jobs 2] [--only ID ...] [--write-docs] [--list]

Score = killed / (generated - not reached - equivalent), equivalents argued one by one in
benchmarks/mutation_notes.py. Results go to reports/mutation/results.json; `--only` re-runs
some mutants and merges them into it. No timed assertions: wall time is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from mutation_notes import NOT_REACHED, NOTES  # noqa: E402
from mutation_ops import Mutant, Site, mutants  # noqa: E402
from mutation_overlay import covered_lines, write_overlay  # noqa: E402

from bench.detection.mutation_doc import BEGIN, END, SCORE_MD, with_section  # noqa: E402

# The modules mutated; persistence.py and nvstate.py can be added here.
MODULES = ("bench.sim.token_decoder", "bench.sim.token_entry")
# The whole device suite, token files first and the random walk last (see above).
SUITE = [
    "tests/device/test_tokens.py",
    "tests/device/test_token_windows.py",
    "tests/device/test_token_procedure.py",
    "tests/device/test_lockout.py",
    "tests/device/test_persistence.py",
    "tests/device/test_nvm_persistence.py",
    "tests/device/test_metrics.py",
    "tests/device/test_power_cuts.py",
    "tests/device/test_brownout.py",
    "tests/device/test_identity.py",
    "tests/device/test_power.py",
    "tests/device/test_rtc_drift.py",
    "tests/device/test_timekeeping.py",
    "tests/device/test_random_walk.py",
]
WALK = "test_random_walk.py::test_random_walk"
OUT = ROOT / "reports" / "mutation"
KILLED, STARTUP, TIMEOUT, SURVIVED, UNREACHED, NOT_LOADED = (
    "killed",
    "killed at start-up",
    "killed by timeout",
    "survived",
    "not reached",
    "mutant not loaded",
)
_FIRST = re.compile(r"^(?:FAILED|ERROR) tests/device/(\S+?)(?: - |$)", re.M)


@dataclass
class Result:
    id: str
    file: str
    line: int
    label: str
    code: str  # the original source line, stripped
    status: str
    first: str = ""  # the first test that failed
    seconds: float = 0.0

    @property
    def note(self) -> tuple[str, str] | None:
        return NOTES.get((self.file, self.code, self.label))


def module_path(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def all_mutants() -> list[Mutant]:
    return [m for module in MODULES for m in mutants(module, module_path(module))]


def run_suite(overlay: Path, timeout_s: float) -> tuple[int | None, str, float]:
    """One device-suite child with the overlay first on its path: (exit code or None on
    timeout, its output, wall seconds)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(overlay), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [sys.executable, "-m", "pytest", *SUITE, "-x", "-q", "-p", "no:cacheprovider", "--no-plots"]
    cmd += ["--report-dir", str(overlay / "report"), "--walk-seed", "1"]
    t0 = time.monotonic()
    with open(overlay / "output.txt", "w+", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # its own session; the simulator ends with its stdin
            proc.wait()
            code = None
        log.seek(0)
        return code, log.read(), time.monotonic() - t0


def judge(m: Mutant, work: Path, timeout_s: float) -> Result:
    overlay = write_overlay(work / m.id, module=m.module, source=m.source, origin=str(m.path))
    code, output, wall = run_suite(overlay, timeout_s)
    first = _FIRST.search(output)
    r = Result(m.id, m.path.name, m.site.line, m.site.label, _line(m), SURVIVED, "", round(wall, 1))
    if (overlay / "import-error").exists():
        r.status = STARTUP
    elif code is None:
        r.status = TIMEOUT
    elif not (overlay / "served").exists():
        r.status = NOT_LOADED
    elif code != 0:
        r.status, r.first = KILLED, first.group(1) if first else f"exit {code}"
    return r


def _line(m: Mutant) -> str:
    return m.path.read_text(encoding="utf-8").splitlines()[m.site.line - 1].strip()


def reached(ms: list[Mutant], work: Path, timeout_s: float) -> tuple[set[str], float]:
    """The mutants on lines the simulator runs in one good-device suite run (traced)."""
    files = {str(module_path(mod)) for mod in MODULES}
    overlay = write_overlay(work / "good-traced", trace=sorted(files))
    code, output, wall = run_suite(overlay, timeout_s)
    if code != 0:
        sys.exit(f"the good device failed the traced suite run (exit {code}):\n{output[-3000:]}")
    lines = covered_lines(overlay)
    hit = {m.id for m in ms if set(range(m.site.line, m.site.end_line + 1)) & lines.get(str(m.path), set())}
    return hit, wall


def sentinels(work: Path, timeout_s: float) -> list[tuple[str, Result]]:
    """Two mutants that prove the overlay takes: one that raises at import, one obvious (every
    token invalid). Not counted in the score."""
    path = module_path(MODULES[0])
    source = path.read_text(encoding="utf-8")
    crash = "raise RuntimeError('mutation benchmark: import-time crash')\n" + source
    invalid = source + "\n\ndef decode(code, key, starting_code, state, **kw):\n    return _INVALID, state\n"
    out: list[tuple[str, Result]] = []
    for name, text in (("import-time crash", crash), ("every token invalid", invalid)):
        m = Mutant(f"sentinel-{len(out) + 1}", MODULES[0], path, Site(-1, 0, 1, 1, name), text)
        out.append((name, judge(m, work, timeout_s)))
    return out


def score_table(results: list[Result]) -> list[str]:
    """Per module and overall: generated, not reached, killed (start-up, timeout), survived,
    equivalent, score."""
    rows = [
        f"{'module':<18}{'generated':>10}{'not reached':>12}{'killed':>8}{'start-up':>9}{'timeout':>8}"
        f"{'survived':>9}{'equivalent':>11}{'score':>8}"
    ]
    for name in sorted({r.file for r in results}) + ["overall"]:
        rs = [r for r in results if name in ("overall", r.file)]
        c = Counter(r.status for r in rs)
        equivalent = sum(1 for r in rs if r.status == SURVIVED and r.note and r.note[0] == "equivalent")
        killed = c[KILLED] + c[STARTUP] + c[TIMEOUT]
        base = len(rs) - c[UNREACHED] - equivalent
        score = f"{100 * killed / base:.1f}%" if base else "-"
        rows.append(
            f"{name:<18}{len(rs):>10}{c[UNREACHED]:>12}{killed:>8}{c[STARTUP]:>9}{c[TIMEOUT]:>8}"
            f"{c[SURVIVED]:>9}{equivalent:>11}{score:>8}"
        )
    return rows


def first_tests(results: list[Result]) -> list[str]:
    by = Counter(r.first for r in results if r.status == KILLED)
    return [f"{n:>5}  {t}" for t, n in by.most_common()]


def markdown(results: list[Result], info: str) -> str:
    """The section for docs/mutation-score.md and docs/detection-matrix.md."""
    survivors = [r for r in results if r.status in (SURVIVED, NOT_LOADED)]
    walk = [r for r in results if r.status == KILLED and r.first == WALK]
    unreached = [r for r in results if r.status == UNREACHED]
    out = [
        BEGIN,
        "## Mutation score",
        "",
        "The device suite run against automatically mutated copies of the simulator's token code, each",
        "mutant running as the simulated device's firmware (`python benchmarks/mutation.py --write-docs`;",
        "how and why: its docstring). Score = killed / (generated - not reached - equivalent).",
        f"{info}.",
        "",
        "```",
        *score_table(results),
        "```",
        "",
        "First failing test of the killed mutants (token files first, the random walk last):",
        "",
        "```",
        *first_tests(results),
        "```",
        "",
        f"Killed only by the random walk (`--walk-seed 1`; every other device test passed): {len(walk)}"
        + (": " + ", ".join(f"`{r.file}:{r.line}` {r.label}" for r in walk) if walk else "."),
        "",
        "### Survivors",
        "",
        "| mutant | where | mutation | source | verdict | argument |",
        "|---|---|---|---|---|---|",
    ]
    for r in survivors:
        kind, why = r.note or ("unargued", "")
        out.append(f"| {r.id} | `{r.file}:{r.line}` | {r.label} | `{_cell(r.code)}` | {kind} | {_cell(why)} |")
    out += [
        "",
        "### Not reached",
        "",
        "Lines the good device's suite never runs in the simulator (mutants not run): " + NOT_REACHED,
        "",
    ]
    by_line: dict[tuple[str, int], list[Result]] = {}
    for r in unreached:
        by_line.setdefault((r.file, r.line), []).append(r)
    out += [f"- `{f}:{n}` `{_cell(rs[0].code)}`: {len(rs)}" for (f, n), rs in sorted(by_line.items())]
    return "\n".join(out + ["", END])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="suite runs side by side (default 2)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds one suite run may take (default 300)")
    ap.add_argument("--only", action="append", default=[], metavar="ID", help="only this mutant (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument(
        "--from-saved", action="store_true", help="run nothing: the tables (and docs) from the saved results"
    )
    ap.add_argument("--write-docs", action="store_true", help=f"write docs/{SCORE_MD} and its section in the matrix")
    ap.add_argument("--out", type=Path, default=OUT, help=f"results folder (default {OUT.relative_to(ROOT)})")
    args = ap.parse_args()

    ms = all_mutants()
    if args.list:
        for m in ms:
            print(f"{m.id:<20}{m.where:<22}{m.site.label:<28}{_line(m)[:60]}")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "results.json"
    keep = (args.only or args.from_saved) and saved.exists()
    results = {r["id"]: Result(**r) for r in json.loads(saved.read_text())} if keep else {}
    todo = [m for m in ms if not args.only or m.id in args.only]
    started = time.monotonic()
    if args.from_saved:
        report(args, [results[m.id] for m in ms if m.id in results], json.loads((args.out / "info.json").read_text()))
        return
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        work = Path(tmp)
        hit, good_wall = reached(ms, work, args.timeout)
        print(f"good device, traced: passed in {good_wall:.1f} s; {len(hit)} of {len(ms)} mutants on lines it runs")
        for name, r in sentinels(work, args.timeout):
            print(f"sentinel mutant '{name}': {r.status} {r.first} ({r.seconds} s)")
        for m in todo:
            if m.id not in hit:
                results[m.id] = Result(m.id, m.path.name, m.site.line, m.site.label, _line(m), UNREACHED)
        run = [m for m in todo if m.id in hit]
        with ThreadPoolExecutor(args.jobs) as pool:
            for done, r in enumerate(pool.map(lambda m: judge(m, work, args.timeout), run), 1):
                results[r.id] = r
                print(
                    f"[{done}/{len(run)}] {r.id:<18}{r.file}:{r.line:<5}{r.label:<26}{r.status} {r.first}", flush=True
                )
    wall = time.monotonic() - started
    ordered = [results[m.id] for m in ms if m.id in results]
    saved.write_text(json.dumps([asdict(r) for r in ordered], indent=1), encoding="utf-8")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = (
        f"{stamp}, CPython {platform.python_version()}, {os.cpu_count()} cores, {args.jobs} runs side by side, "
        f"{'mutants ' + ' '.join(args.only) + ' re-run in' if args.only else 'wall time'} {wall / 60:.1f} min"
    )
    if not args.only:
        (args.out / "info.json").write_text(json.dumps(info), encoding="utf-8")
    report(args, ordered, info)


def report(args: argparse.Namespace, ordered: list[Result], info: str) -> None:
    """The printed tables, the survivors with their arguments, and the docs when asked."""
    saved = args.out / "results.json"
    print()
    print("\n".join(score_table(ordered)))
    print("\nfirst failing test of the killed mutants:\n" + "\n".join(first_tests(ordered)))
    for r in ordered:
        if r.status in (SURVIVED, NOT_LOADED):
            kind, why = r.note or ("unargued", "")
            print(f"{r.status}: {r.id} {r.file}:{r.line} {r.label}  [{r.code}]  {kind}: {why}")
    print(f"\n{info}; results in {saved}")
    if args.write_docs:
        if args.only:
            print("(--write-docs with --only: the table merges this run into the saved results)")
        section = markdown(ordered, info)
        (ROOT / "docs" / SCORE_MD).write_text(
            "# Mutation score\n\n<!-- Generated by `python benchmarks/mutation.py --write-docs`. -->\n\n"
            + section
            + "\n",
            encoding="utf-8",
        )
        matrix = ROOT / "docs" / "detection-matrix.md"
        matrix.write_text(with_section(matrix.read_text(encoding="utf-8"), section), encoding="utf-8")
        print(f"wrote docs/{SCORE_MD} and its section in docs/detection-matrix.md")


if __name__ == "__main__":
    main()
