"""Scenario (run by test_rig_health.py, not collected on its own): the rig dies mid-run."""


def test_port_vanishes(dut, rig_endpoints):
    rig_endpoints.sim.process.kill()
    rig_endpoints.sim.process.wait(5)
    dut.ping()


def test_after_one(dut):
    dut.ping()


def test_after_two(provisioned_dut):
    provisioned_dut.status()


def test_without_rig():
    assert True
