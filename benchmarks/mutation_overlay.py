"""The overlay that makes the simulator run a mutant (benchmarks/mutation.py), without touching
the product code: a directory put first on the suite child's PYTHONPATH, holding the mutant's
source, a `mutant.json` and this `sitecustomize.py` template.

Every Python process of the run imports it (pytest and the simulator the virtual rig starts as
`python -m bench.sim`, with the parent's environment); only the simulator acts on it:

- with a mutant: a `sys.meta_path` finder serves the mutant's source for that one module name,
  and notes in `served` that it did (so a run that never loaded the mutant is not a survivor); a
  mutant that raises while it is imported writes `import-error` first (killed at start-up);
- with `trace`: a line tracer records, per simulator process, the lines of the listed files that
  run (`lines-<pid>`), to tell which mutants the good device's suite can reach at all.

It then runs the next `sitecustomize` on the path (the checkout's environment may have one).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

SITECUSTOMIZE = r"""
import importlib.abc, importlib.machinery, importlib.util, json, os, sys, threading

_HERE = os.path.dirname(os.path.abspath(__file__))
_CONF = json.load(open(os.path.join(_HERE, "mutant.json"), encoding="utf-8"))


def _in_simulator():
    argv = list(getattr(sys, "orig_argv", []))
    return any(a == "-m" and b == "bench.sim" for a, b in zip(argv, argv[1:]))


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        with open(os.path.join(_HERE, "served"), "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
        try:
            with open(_CONF["source"], encoding="utf-8") as f:
                code = compile(f.read(), _CONF["origin"], "exec")
            exec(code, module.__dict__)
        except BaseException as e:
            with open(os.path.join(_HERE, "import-error"), "a", encoding="utf-8") as f:
                f.write(f"{type(e).__name__}: {e}\n")
            raise


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _CONF["module"] or not _in_simulator():
            return None
        return importlib.util.spec_from_loader(fullname, _Loader(), origin=_CONF["origin"])


def _tracer(files):
    seen = set()
    out = os.path.join(_HERE, f"lines-{os.getpid()}")

    def local(frame, event, arg):
        if event == "line":
            key = (frame.f_code.co_filename, frame.f_lineno)
            if key not in seen:
                seen.add(key)
                with open(out, "a", encoding="utf-8") as f:
                    f.write(f"{key[0]}\t{key[1]}\n")
        return local

    def call(frame, event, arg):
        return local if frame.f_code.co_filename in files else None

    return call


if _CONF.get("module"):
    sys.meta_path.insert(0, _Finder())
if _CONF.get("trace") and _in_simulator():
    _t = _tracer(set(_CONF["trace"]))
    sys.settrace(_t)
    threading.settrace(_t)

# the next sitecustomize on the path, if any
_spec = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
)
if _spec is not None and _spec.loader is not None:
    _next = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_next)
"""


def write_overlay(folder: Path, *, module: str = "", source: str = "", origin: str = "", trace=()) -> Path:
    """A fresh overlay directory: the mutant of `module` (source text, reported as `origin`),
    and/or line tracing of the files in `trace`."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    conf = {"module": module, "origin": origin, "trace": [str(t) for t in trace]}
    if module:
        (folder / "mutant_source.py").write_text(source, encoding="utf-8")
        conf["source"] = str(folder / "mutant_source.py")
    (folder / "mutant.json").write_text(json.dumps(conf), encoding="utf-8")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.lstrip(), encoding="utf-8")
    return folder


def covered_lines(folder: Path) -> dict[str, set[int]]:
    """The lines the traced simulator processes ran, per file."""
    lines: dict[str, set[int]] = {}
    for part in folder.glob("lines-*"):
        for row in part.read_text(encoding="utf-8").splitlines():
            name, _, line = row.rpartition("\t")
            lines.setdefault(name, set()).add(int(line))
    return lines
