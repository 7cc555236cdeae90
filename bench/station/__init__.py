"""The station: the rig as one thing a test talks to.

Bring-up and keeping the DUT answering (`rig_session.py`), power control with telemetry and
power cuts (`power_control.py`), the virtual rig's launcher (`virtual_rig.py`); what the bench
knows about each device it drives (the ledger, `ledger.py`, written by `ledger_recorder.py`), the
mapping from the rig's DUT profile to provisioning, model and token server (`profile.py`), the
model-vs-DUT check (`token_session.py`), and the per-run keeper that gives every test a known
token state from a factory reset or from the ledger (`dut_tokens.py`, `reconcile.py`,
`rebase.py`). No pytest here: fixtures wire it, benchmarks and the CLI can use it as well.
"""
