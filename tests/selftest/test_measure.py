"""Measurements with limits (bench/measure/measurement.py) and the `measure` fixture end to end:
a generated test module run by pytest itself (pytester), its outcome and its JUnit properties."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from bench.measure.measurement import Measurement, Measurements

pytest_plugins = ["pytester"]


# -- outcomes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,low,high,outcome",
    [
        (5.0, 0.0, 5.0, "PASS"),  # at the high limit
        (0.0, 0.0, 5.0, "PASS"),  # at the low limit
        (5.000001, 0.0, 5.0, "FAIL"),
        (-1e-9, 0.0, 5.0, "FAIL"),
        (2, 1, 3, "PASS"),  # ints
        (4, 1, 3, "FAIL"),
        (-100.0, None, 5.0, "PASS"),  # one-sided high
        (6.0, None, 5.0, "FAIL"),
        (1e9, 0.0, None, "PASS"),  # one-sided low
        (-0.1, 0.0, None, "FAIL"),
        (12345.0, None, None, "PASS"),  # no limits
        (math.inf, None, 5.0, "FAIL"),
        (-math.inf, 0.0, None, "FAIL"),
    ],
)
def test_outcome_against_limits(value, low, high, outcome):
    """Limits are inclusive; anything beyond either one fails."""
    assert Measurement("x", value, "V", low, high).outcome == outcome


@pytest.mark.parametrize("low,high", [(None, None), (0.0, 1.0), (None, 1.0), (0.0, None)])
def test_nan_always_fails(low, high):
    """NaN is a failed measurement whatever the limits (even with none)."""
    assert Measurement("x", math.nan, "ppm", low, high).outcome == "FAIL"


@pytest.mark.parametrize(
    "value,expected,outcome",
    [
        ("1.0", "1.0", "PASS"),
        ("0.9", "1.0", "FAIL"),
        (True, True, "PASS"),
        (False, True, "FAIL"),
        (False, False, "PASS"),  # expected=False is a real expectation, not "no expectation"
        (math.nan, "nan", "FAIL"),
    ],
)
def test_expected_value(value, expected, outcome):
    """expected= compares for equality, for strings and booleans alike."""
    assert Measurement("x", value, expected=expected).outcome == outcome


def test_non_numeric_without_expectation_passes():
    """A string or bool recorded for information only (no expected=) passes."""
    assert Measurement("fw", "1.2.3").outcome == "PASS"
    assert Measurement("flag", False).outcome == "PASS"


def test_text_forms():
    """limits_text / value_text render limits and units at the unit's precision (format_quantity)."""
    assert Measurement("v", 3.3, "V", 3.0, 3.6).limits_text() == "[3, 3.6] V"
    assert Measurement("v", 3.3, "V", low=3.0).limits_text() == ">= 3 V"
    assert Measurement("v", 3.3, "V", high=3.6).limits_text() == "<= 3.6 V"
    assert Measurement("v", 3.3, "V").limits_text() == "(no limit)"
    assert Measurement("v", 3.3).limits_text() == "(no limit)"
    assert Measurement("s", "ok", expected="ok").limits_text() == "== ok"
    assert Measurement("d", 12.3456789, "ppm").value_text() == "12.3 ppm"
    assert Measurement("t", 0.00794506, "s", high=0.005).value_text() == "7.945 ms"
    assert Measurement("t", 0.00794506, "s", high=0.005).limits_text() == "<= 5 ms"
    assert Measurement("e", -0.51093, "s", -1.0061111, 1.0061111).limits_text() == "[-1.006, 1.006] s"
    assert Measurement("n", 42, "bytes").value_text() == "42 bytes"
    assert Measurement("n", 42).value_text() == "42"
    assert Measurement("f", math.nan, "s").value_text() == "nan s"


@pytest.mark.parametrize(
    ("value", "unit", "among", "trim", "text"),
    [
        (0.00794506, "s", (), False, "7.945 ms"),  # not 0.00794506 s
        (8.519628630707961e-05, "s", (), False, "85.20 µs"),
        (3.9990356752532534, "s", (), False, "3.999 s"),
        (172800, "s", (), False, "172800 s"),
        (0.045, "A", (), False, "45.00 mA"),
        (0.0, "V", (), False, "0.000 V"),
        (-0.0001, "V", (0.5,), False, "-0.1 mV"),
        (-0.0000001, "V", (0.5,), False, "0.0 mV"),  # no sign on a printed zero
        (11.7, "V", (), False, "11.70 V"),
        (230.0189957122889, "ppm", (685.0,), False, "230.0 ppm"),
        (685.0, "ppm", (230.0189957122889,), True, "685 ppm"),
        (-0.511, "s", (-1.0061, 1.0061), False, "-0.511 s"),  # one prefix with its limits
        (0.004, "s", (0.5,), False, "4.0 ms"),
        (1.4996, "s", (1.5,), False, "1.4996 s"),  # never prints as its limit 1.500
        (1.5, "s", (1.4996,), True, "1.5 s"),
        (1.5001244, "s", (1.5,), False, "1.5001 s"),
        (39, "", (), False, "39"),
        (12345.6, "bytes", (), False, "12346 bytes"),
        (1e-07, "", (), False, "1e-07"),
        (True, "", (), False, "True"),
        ("abc", "", (), False, "abc"),
        (math.nan, "s", (1.0,), False, "nan s"),
    ],
)
def test_one_format_for_every_number_at_its_units_precision(value, unit, among, trim, text):
    from bench.measure.quantity import format_quantity

    assert format_quantity(value, unit, among, trim) == text


def test_as_dict():
    """as_dict carries everything a record needs, including the outcome."""
    d = Measurement("drift", 7.5, "ppm", -5.0, 5.0).as_dict()
    assert d == {
        "name": "drift",
        "value": 7.5,
        "unit": "ppm",
        "low": -5.0,
        "high": 5.0,
        "expected": None,
        "outcome": "FAIL",
        "marginal": False,
        "spec_entry": None,
    }


def test_measurements_collects_all_and_names_failures():
    """Every measurement is kept in order; failed/failure_text list only the out-of-limit ones."""
    m = Measurements()
    m("current", 0.045, "A", high=0.1)
    m("drift", 12.5, "ppm", -5, 5)
    m("boot", 2.5, "s", high=1.0)
    assert [x.name for x in m.items] == ["current", "drift", "boot"]
    assert [x.name for x in m.failed] == ["drift", "boot"]
    assert m.failure_text() == "drift = 12.5 ppm outside [-5, 5] ppm; boot = 2.500 s outside <= 1 s"


# -- the fixture, end to end ----------------------------------------------------------------------


@pytest.fixture
def measure_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\naddopts = -p no:paygo_bench\n")  # the measure fixture alone, not the whole plugin
    pytester.makeconftest('pytest_plugins = ["bench.fixtures.measure"]\n')
    pytester.makepyfile(
        test_meas="""
        def test_mixed(measure):
            measure("supply_current", 0.045, "A", low=0.0, high=0.1)
            measure("rtc_drift", 12.5, "ppm", low=-5.0, high=5.0)
            measure("after_fail", 1, "", low=0)  # still recorded after the failing one

        def test_all_good(measure):
            measure("supply_current", 0.05, "A", high=0.1)

        def test_crashes(measure):
            measure("rtc_drift", 12.5, "ppm", low=-5.0, high=5.0)
            raise RuntimeError("boom")
        """
    )
    return pytester


def _properties(xml_path) -> dict[str, dict[str, str]]:
    out = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        out[case.get("name")] = {p.get("name"): p.get("value") for p in case.iter("property")}
    return out


def test_fixture_fails_test_with_out_of_limit_measurement(measure_project: pytest.Pytester):
    """A test with one in-limit and one out-of-limit measurement FAILS (not errors), with a
    message naming the out-of-limit one; all measurements land in JUnit <properties>."""
    xml = measure_project.path / "junit.xml"
    result = measure_project.runpytest(f"--junitxml={xml}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2, errors=0)
    message = "measurement(s) out of limits: rtc_drift = 12.5 ppm outside [-5, 5] ppm"
    lines = [ln for ln in result.stdout.lines if "out of limits" in ln]
    assert any(message in ln for ln in lines), result.stdout.str()
    assert not any("supply_current" in ln or "after_fail" in ln for ln in lines)

    props = _properties(xml)
    assert props["test_mixed"] == {
        "measurement:supply_current": "45.0 mA PASS [0, 100] mA",
        "measurement:rtc_drift": "12.5 ppm FAIL [-5, 5] ppm",
        "measurement:after_fail": "1 PASS >= 0",
    }
    assert props["test_all_good"] == {"measurement:supply_current": "50.0 mA PASS <= 100 mA"}
    # a test that raised keeps its own exception, and its measurements are still recorded
    assert props["test_crashes"] == {"measurement:rtc_drift": "12.5 ppm FAIL [-5, 5] ppm"}
    result.stdout.fnmatch_lines(["*RuntimeError: boom*"])

    root = ET.parse(xml).getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["test_mixed"].find("failure") is not None
    assert cases["test_mixed"].find("error") is None
    assert "rtc_drift" in cases["test_mixed"].find("failure").get("message")
