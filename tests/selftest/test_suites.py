"""Suite profiles (bench/suites): the shipped ones load and name only tests the device suite has;
a bad profile or an unknown name is refused in one line naming where and the known names; the
plugin selects, scales and expands them as a run sees it (`pytest --suite`, the rig's dut.suite)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.suites import (
    RequiredTest,
    SuiteError,
    declared_tests,
    expand_required,
    load_profile,
    matches,
    parse_profile,
    profile_names,
)
from tests.selftest.device_suite import ROOT

DEVICE = ROOT / "tests" / "device"


def device_tests() -> dict[str, set[str]]:
    """Every device test as file.py::name, with its pytest marker names (ast: nothing imported)."""
    found = {}
    for path in sorted(DEVICE.glob("test_*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                marks = set()
                for d in node.decorator_list:
                    target = d.func if isinstance(d, ast.Call) else d
                    if isinstance(target, ast.Attribute) and ast.unparse(target).startswith("pytest.mark."):
                        marks.add(target.attr)
                found[f"{path.name}::{node.name}"] = marks
    return found


def test_the_shipped_profiles_load():
    assert profile_names() == ("full", "quick", "soak", "token")
    for name in profile_names():
        p = load_profile(name)
        assert p.name == name and p.title and p.required and p.soak_factor >= 1, p
        assert p.source == f"bench/suites/{name}.toml"
    assert load_profile("soak").soak_factor == 10 and load_profile("full").soak_factor == 1
    assert load_profile("full").required == ("*",) and load_profile("full").select == ""
    assert load_profile("token").title == "OpenPAYGO Token certification"


@pytest.mark.parametrize("name", ["full", "quick", "soak", "token"])
def test_every_required_pattern_names_a_device_test(name):
    tests = device_tests()
    for pattern in load_profile(name).required:
        hits = [t for t in tests if matches(pattern, t)]
        assert hits, f"bench/suites/{name}.toml: {pattern!r} matches no test in tests/device"


def test_the_quick_profile_requires_every_quick_test_but_the_identity_ones():
    tests = device_tests()
    quick = {t for t, marks in tests.items() if "quick" in marks}
    required = {r.test_id for r in expand_required(load_profile("quick").required, list(tests))}
    assert required == quick - {"test_identity.py::test_identity", "test_identity.py::test_provisioning_round_trip"}
    assert len(required) == 7


def test_the_token_profile_requires_what_certification_asks():
    tests = device_tests()
    required = {r.test_id for r in expand_required(load_profile("token").required, list(tests)) if r.collected}
    assert {t for t in tests if t.startswith(("test_tokens.py", "test_lockout.py", "test_power_cuts.py"))} <= required
    assert "test_token_procedure.py::test_full_procedure" in required
    assert not any(t.startswith(("test_metrics.py", "test_identity.py", "test_brownout.py")) for t in required)


def test_expansion_keeps_collection_order_and_reports_unmatched_patterns():
    ids = ["a.py::test_1", "a.py::test_2", "b.py::test_3[x]", "b.py::test_3[y]"]
    got = expand_required(["b.py::test_3", "a.py::*", "a.py::test_1", "c.py::test_9"], ids)
    assert got == [
        RequiredTest("a.py::test_1", True),
        RequiredTest("a.py::test_2", True),
        RequiredTest("b.py::test_3[x]", True),
        RequiredTest("b.py::test_3[y]", True),
        RequiredTest("c.py::test_9", False),
    ]
    assert [r.test_id for r in expand_required(["*"], ids)] == ids
    # tests of the suite the run did not collect (a narrower path) are required too, as not collected
    got = expand_required(["*"], ids[:2], uncollected=["b.py::test_3", "c.py::test_9"])
    assert got == [
        RequiredTest("a.py::test_1", True),
        RequiredTest("a.py::test_2", True),
        RequiredTest("b.py::test_3", False),
        RequiredTest("c.py::test_9", False),
    ]


GOOD = b'name = "mine"\ntitle = "Mine"\nrequired = ["test_tokens.py::*"]\n'


@pytest.mark.parametrize(
    "text, says",
    [
        (GOOD.replace(b'"Mine"', b"3"), "mine.toml: title: got 3; expected a TOML str"),
        (GOOD + b'selct = "quick"\n', "mine.toml: selct: unknown key; expected one of name, title"),
        (GOOD.replace(b'["test_tokens.py::*"]', b"[]"), "mine.toml: required: empty"),
        (
            GOOD.replace(b'"test_tokens.py::*"', b'"tokens"'),
            "mine.toml: required[0]: got 'tokens'; expected 'file.py::test_name'",
        ),
        (
            GOOD + b'select = "quick and"\n',
            "mine.toml: select: got 'quick and'; expected a pytest -m marker expression",
        ),
        (GOOD + b"soak_factor = 0\n", "mine.toml: soak_factor: got 0; expected a whole number >= 1"),
        (GOOD + b"soak_factor = true\n", "mine.toml: soak_factor: got True; expected a TOML int"),
        (GOOD.replace(b'"mine"', b'"other"'), "mine.toml: name: got 'other'; expected the file's name, 'mine'"),
        (b'name = "mine"\n', "mine.toml: title: missing"),
        (b'name = "mine\n', "mine.toml: not a valid UTF-8 TOML file"),
    ],
)
def test_a_malformed_profile_is_refused_in_one_line_naming_the_file(tmp_path, text, says):
    (tmp_path / "mine.toml").write_bytes(text)
    with pytest.raises(SuiteError) as e:
        load_profile("mine", root=tmp_path)
    assert str(e.value).startswith(str(tmp_path / "mine.toml")) and says in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_an_unknown_profile_is_refused_naming_the_known_ones(tmp_path):
    (tmp_path / "mine.toml").write_bytes(GOOD)
    assert load_profile("mine", root=tmp_path).required == ("test_tokens.py::*",)
    with pytest.raises(SuiteError, match=r"^--suite: no suite profile 'nope'; known: mine$"):
        load_profile("nope", root=tmp_path)
    assert parse_profile(GOOD, "x.toml").select == ""


def test_the_tests_doc_lists_every_profile():
    doc = (ROOT / "docs" / "tests.md").read_text(encoding="utf-8")
    suites = doc.split("## Suites", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([a-z0-9_-]+)` \|", suites, re.M))
    assert rows == set(profile_names()), rows


# -- the plugin, as pytest runs it ---------------------------------------------------------------


def collected(*args: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    run = tmp_path / "run"
    proc = pytest_run(*args, "--collect-only", "-q", "--report-dir", str(run))
    return proc, json.loads((run / "record.json").read_text(encoding="utf-8"))


def pytest_run(*args: str, plugin_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = None
    if plugin_dir is not None:
        import os

        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")])),
        }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_an_unknown_suite_option_is_one_line_naming_the_option_and_the_known_names(tmp_path):
    proc = pytest_run("tests/device", "--suite", "nope", "--report-dir", str(tmp_path / "run"))
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 4 and len(err) == 1, proc.stdout[-2000:] + proc.stderr
    assert "--suite: no suite profile 'nope'; known: full, quick, soak, token" in err[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_an_unknown_suite_in_the_rig_file_names_the_file_and_key(tmp_path):
    rig = tmp_path / "lab.toml"
    rig.write_text('[station]\nid = "lab-1"\n[dut]\nsuite = "certify"\n', encoding="utf-8")
    proc = pytest_run("tests/device", "--rig", str(rig), "--report-dir", str(tmp_path / "run"))
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 4 and len(err) == 1, proc.stdout[-2000:] + proc.stderr
    assert f"{rig}: dut.suite: no suite profile 'certify'; known: full, quick, soak, token" in err[0], err[0]


def test_the_rig_files_suite_selects_and_the_option_overrides_it(tmp_path):
    rig = tmp_path / "lab.toml"
    rig.write_text('[station]\nid = "lab-1"\n[dut]\nsuite = "quick"\n', encoding="utf-8")
    run = tmp_path / "run"
    proc = pytest_run("tests/device", "--rig", str(rig), "--collect-only", "-q", "--report-dir", str(run))
    total = len(declared_tests(DEVICE))
    assert proc.returncode == 2 and f"9/{total} tests collected ({total - 9} deselected)" in proc.stdout, proc.stdout
    suite = json.loads((run / "record.json").read_text(encoding="utf-8"))["suite"]
    assert (suite["name"], suite["required"], suite["covered"]) == ("quick", 7, 0)
    assert {m["why"] for m in suite["missing"]} == {"not run"}
    run = tmp_path / "run2"  # a run directory is never reused
    proc = pytest_run(
        "tests/device", "--rig", str(rig), "--suite", "token", "--collect-only", "-q", "--report-dir", str(run)
    )
    suite = json.loads((run / "record.json").read_text(encoding="utf-8"))["suite"]
    assert suite["name"] == "token" and "deselected" not in proc.stdout, proc.stdout


def test_the_tests_read_from_the_suite_files_are_the_tests_pytest_collects(tmp_path):
    """What a path-narrowed run left out is found by reading the files: it must be what pytest finds."""
    proc, _ = collected("tests/device", tmp_path=tmp_path)
    ids = [line.removeprefix("tests/device/") for line in proc.stdout.splitlines() if line.startswith("tests/device/")]
    assert len(ids) >= 45 and sorted(declared_tests(DEVICE)) == sorted(ids)


def test_a_run_narrowed_to_one_file_still_requires_the_whole_suite(tmp_path):
    proc, rec = collected("tests/device/test_tokens.py", tmp_path=tmp_path)
    suite = rec["suite"]
    assert suite["name"] == "full" and suite["required"] == len(declared_tests(DEVICE)), suite
    why = {m["nodeid"]: m["why"] for m in suite["missing"]}
    assert why["tests/device/test_lockout.py::test_lockout_schedule"] == "not collected"
    assert why["tests/device/test_tokens.py::test_valid_token_accepted"] == "not run"  # --collect-only


PROBE = """
import pytest

@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    from bench.fixtures.rig import RIG_KEY
    print("power_cut_cycles", config.stash[RIG_KEY].dut.power_cut_cycles)
"""


@pytest.mark.parametrize(
    "args, cycles", [((), 200), (("--suite", "soak"), 2000), (("--suite", "soak", "--soak-factor", "3"), 600)]
)
def test_the_soak_profile_scales_the_endurance_settings_and_the_option_overrides_it(tmp_path, args, cycles):
    (tmp_path / "soak_probe.py").write_text(PROBE, encoding="utf-8")
    proc = pytest_run(
        "tests/device/test_power_cuts.py",
        "-p",
        "soak_probe",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        "--collect-only",
        "-q",
        "--report-dir",
        str(tmp_path / "run"),
        *args,
        plugin_dir=tmp_path,
    )
    assert f"power_cut_cycles {cycles}\n" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
