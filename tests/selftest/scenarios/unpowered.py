"""Scenario (run by test_rig_health.py): a request while the DUT is unpowered."""


def test_request_while_off(dut, power_cycle):
    power_cycle.off()
    dut.ping()
