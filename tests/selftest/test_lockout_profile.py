"""The lockout schedule is a profile parameter: a profile that declares another schedule than the
device runs makes the schedule test fail (the bench checks the declared schedule, it does not
learn it from the device)."""

from __future__ import annotations

import re

from tests.selftest.device_suite import run_device_suite

SCHEDULE_TEST = "tests/device/test_lockout.py::test_lockout_schedule"


def test_declared_schedule_is_the_one_checked(tmp_path):
    rig = tmp_path / "docs-schedule.toml"
    rig.write_text(
        '[station]\nid = "virtual-docs-lockout"\n\n[dut]\nlockout_free_errors = 0\nlockout_first_minutes = 1\n'
    )
    results, output = run_device_suite(tmp_path, args=["--rig", str(rig), "-k", "lockout_schedule"])
    assert results[SCHEDULE_TEST].outcome == "failed", output
    message = results[SCHEDULE_TEST].message
    # the first error now locks, for 60 s by the model's clock, 59 s once a second ticked before the
    # status was read (a loaded host)
    assert re.search(r"token entry locked for 0 s, the model (60|59) s", message), message
