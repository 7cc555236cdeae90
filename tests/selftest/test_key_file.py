"""A device key file that other users of the host can read gets a warning naming the file, its
mode and the fix (bench/rig/values.py); the owner's own file gets none. On `paygo-bench run` the
warning is one line, without Python's file-and-line prefix."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from bench.rig import load_rig
from bench.rig.values import KeyFileWarning
from tests.selftest.device_suite import ROOT

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"  # the public quick-test key (docs/tokens.md "Quick test")


def rig_with_key_file(tmp_path, mode: int):
    key = tmp_path / "dut.key"
    key.write_text(KEY + "\n")
    key.chmod(mode)
    rig = tmp_path / "lab.toml"
    rig.write_text(
        '[station]\nid = "virtual-key"\n[dut]\nserial_number = "SIM000001"\nstarting_code = 123456789\n'
        'secret_key_file = "dut.key"\n'
    )
    return rig, key


@pytest.mark.parametrize(("mode", "who"), [(0o644, "its group and others"), (0o640, "its group"), (0o604, "others")])
def test_a_key_file_others_can_read_is_warned_about(tmp_path, mode, who):
    rig, key = rig_with_key_file(tmp_path, mode)
    with pytest.warns(KeyFileWarning) as seen:
        loaded = load_rig(rig)
    assert loaded.dut.secret_key.reveal() == KEY  # a warning, not a refusal
    (warning,) = seen
    text = str(warning.message)
    assert (
        text
        == f"{key}: the device key file is readable by {who} (mode {mode:04o}); make it the owner's alone: chmod 600 {key}"
    )
    assert KEY not in text


def test_the_owners_own_key_file_gets_no_warning(tmp_path):
    rig, _ = rig_with_key_file(tmp_path, 0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeyFileWarning)
        load_rig(rig)


def test_the_run_says_it_in_one_line(tmp_path):
    rig, key = rig_with_key_file(tmp_path, 0o644)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--rig", str(rig), "--report-dir", str(tmp_path / "run"), "-k", "test_identity"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    line = f"paygo-bench: warning: {key}: the device key file is readable by its group and others (mode 0644)"
    assert any(x.startswith(line) for x in proc.stderr.splitlines()), proc.stderr[-2000:]
    assert "UserWarning" not in proc.stderr and KEY not in proc.stdout + proc.stderr
