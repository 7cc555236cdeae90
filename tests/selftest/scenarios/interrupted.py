"""Scenario (run by test_rig_health.py): the operator presses Ctrl-C in the middle of a test."""

import os
import signal


def test_interrupted_while_powered(dut, psu):
    assert psu.output_state()
    os.kill(os.getpid(), signal.SIGINT)


def test_never_reached(dut):
    dut.ping()
