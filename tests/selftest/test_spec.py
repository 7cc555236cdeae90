"""The product test spec (bench/measure/spec.py, docs/spec.md): every measurement's unit and
limits in a TOML file, selected by the rig's DUT profile, governing the verdict, with marginal
passes shown as such; a bad spec is refused in one line naming the file and the entry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure.measurement import Measurements
from bench.measure.spec import SpecError, is_marginal, load_spec
from bench.report.html import measurements_html
from tests.selftest.device_suite import ROOT, run_device_suite

REFERENCE = ROOT / "bench" / "specs" / "reference.toml"
HEAD = '[spec]\nproduct = "p"\nversion = "2"\nmarginal = 0.1\n'


def spec_file(tmp_path: Path, body: str, head: str = HEAD) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(head + body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "body, head, where, what",
    [
        ('[measurements.x]\nunit = "s"\nhigh = 1\n', '[spec]\nversion = "1"\n', "spec.product", "missing"),
        ('[measurements.x]\nunit = "s"\nhigh = 1\nmax = 2\n', HEAD, "measurements.x", "unknown key(s) max"),
        ('[measurements.x]\nunit = "s"\nlow = 2\nhigh = 1\n', HEAD, "measurements.x", "low 2 > high 1"),
        ('[measurements.x]\nunit = "s"\n', HEAD, "measurements.x", "no limits"),
        (
            '[measurements.x]\nunit = "s"\nlimits = "test"\nhigh = 1\nwhy = "w"\n',
            HEAD,
            "measurements.x",
            "one or the other",
        ),
        ('[measurements.x]\nunit = "s"\nlimits = "test"\n', HEAD, "measurements.x.why", "must say why"),
        ('[measurements.x]\nunit = "s"\nlimits = "maybe"\n', HEAD, "measurements.x.limits", "'maybe'"),
        ('[measurements.x]\nunit = "s"\nhigh = "1"\n', HEAD, "measurements.x.high", "expected a finite number"),
        ('[measurements.x]\nunit = "s"\nhigh = 1\nmarginal = 0.7\n', HEAD, "measurements.x.marginal", "[0, 0.5)"),
        ("[measurements.x\n", HEAD, "TOML", ""),
        ("", HEAD, "measurements", "missing"),
    ],
)
def test_a_bad_spec_is_one_line_naming_file_and_entry(tmp_path, body, head, where, what):
    path = spec_file(tmp_path, body, head)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    text = str(e.value)
    assert text.startswith(f"{path}: {where}: ") and what in text and "\n" not in text, text


def test_entries_match_by_name_then_longest_glob(tmp_path):
    spec = load_spec(
        spec_file(
            tmp_path,
            (
                '[measurements."a*"]\nunit = "s"\nhigh = 9\n'
                '[measurements."ab*"]\nunit = "s"\nhigh = 5\n'
                '[measurements.abc]\nunit = "s"\nlimits = "test"\nwhy = "w"\n'
                '[measurements.n]\nunit = ""\nlimits = "none"\nwhy = "w"\n'
            ),
        )
    )
    assert spec.entry("abc").pattern == "abc" and spec.entry("abd").pattern == "ab*"
    assert spec.entry("ax").pattern == "a*" and spec.entry("zz") is None
    assert (spec.apply("abd", "s", 0, 100).low, spec.apply("abd", "s", 0, 100).high) == (None, 5.0)
    assert (spec.apply("abc", "s", 1, 2).low, spec.apply("abc", "s", 1, 2).high) == (1, 2)  # the test's own
    assert (spec.apply("n", "", 1, 2).low, spec.apply("n", "", 1, 2).high) == (None, None)
    with pytest.raises(SpecError, match=r"ab\*: unit 's', but the test records abd in 'ms'"):
        spec.apply("abd", "ms", None, None)
    with pytest.raises(SpecError, match="zz: no entry for this measurement"):
        spec.apply("zz", "s", None, None)


def test_the_spec_judges_and_marks_marginal_passes(tmp_path):
    spec = load_spec(spec_file(tmp_path, '[measurements.t]\nunit = "s"\nlow = 0\nhigh = 10\n'))
    m = Measurements(spec=spec)
    ok, close, out = m("t", 5.0, "s", high=100), m("t", 9.5, "s", high=100), m("t", 10.5, "s", high=100)
    assert [x.outcome for x in (ok, close, out)] == ["PASS", "PASS", "FAIL"]  # 100 replaced by the spec's 10
    assert [x.verdict for x in (ok, close, out)] == ["PASS", "PASS (marginal)", "FAIL"]
    assert close.as_dict()["marginal"] is True and close.as_dict()["spec_entry"] == "t"
    table = measurements_html([ok, close, out])
    assert "PASS (marginal)" in table and "darkorange" in table and table.count("red") == 1
    with pytest.raises(SpecError, match="compares with one value"):
        m("t", 3, "s", expected=3)


@pytest.mark.parametrize(
    "value, low, high, band, marginal",
    [
        (9.5, 0, 10, 0.1, True),
        (0.5, 0, 10, 0.1, True),
        (5, 0, 10, 0.1, False),
        (10.5, 0, 10, 0.1, False),
        (4.8, None, 5, 0.1, True),
        (4.0, None, 5, 0.1, False),
        (0.0011, 0.001, None, 0.2, True),
        (9.5, 0, 10, 0.0, False),
        (True, 0, 10, 0.1, False),
        (float("nan"), 0, 10, 0.1, False),
    ],
)
def test_marginal_band(value, low, high, band, marginal):
    assert is_marginal(value, low, high, band) is marginal


def test_the_reference_spec_loads_and_explains_every_borrowed_limit():
    spec = load_spec(REFERENCE)
    assert spec.entry("G8A_decode_time").high == 5.0
    assert all(e.why.strip() for e in spec.entries if e.mode != "spec")


def narrowed_rig(tmp_path: Path) -> Path:
    spec = REFERENCE.read_text(encoding="utf-8").replace(
        '[measurements."G8*_decode_time"]\nunit = "s"\nhigh = 5.0',
        '[measurements."G8*_decode_time"]\nunit = "s"\nhigh = 0.000001',
    )
    assert "high = 0.000001" in spec
    (tmp_path / "narrow.toml").write_text(spec, encoding="utf-8")
    rig = tmp_path / "rig.toml"
    rig.write_text('[station]\nid = "virtual"\n[dut]\nspec = "narrow.toml"\n', encoding="utf-8")
    return rig


def test_the_rig_selects_the_spec_and_its_limits_decide(tmp_path):
    results, output = run_device_suite(tmp_path, args=("--rig", str(narrowed_rig(tmp_path)), "-k", "full_procedure"))
    ((name, result),) = results.items()
    assert name.endswith("test_full_procedure") and result.outcome == "failed", output
    # the spec's 1e-06 s, printed in the unit of the value it judged (bench/measure/quantity.py)
    assert "G8A_decode_time" in result.message and "ms outside <= 0.001 ms" in result.message, result.message


def test_a_missing_spec_file_stops_the_run_in_one_line(tmp_path):
    rig = tmp_path / "rig.toml"
    rig.write_text('[station]\nid = "virtual"\n[dut]\nspec = "nowhere.toml"\n', encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/device", "-q", "-p", "no:cacheprovider", "--rig", str(rig)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"test spec: {tmp_path / 'nowhere.toml'}: file: cannot be read" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_measurement_named_in_the_device_suite_has_a_reference_entry():
    """Names recorded only on rare paths (a failure, the random-delay cuts) are covered too: the
    virtual rig's full run does not reach them."""
    import re

    spec = load_spec(REFERENCE)
    names = set()
    for path in list((ROOT / "tests" / "device").glob("*.py")) + list((ROOT / "fixtures").glob("*.py")):
        names |= set(re.findall(r"""measure\(\s*"([A-Za-z0-9_]+)\"""", path.read_text(encoding="utf-8")))
    assert len(names) > 30, names
    missing = sorted(n for n in names if spec.entry(n) is None)
    assert not missing, f"{REFERENCE}: no entry for {missing}"
