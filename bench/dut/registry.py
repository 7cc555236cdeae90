"""Which adapter speaks which protocol: the rig file's `dut.adapter` names one of these."""

from __future__ import annotations

from bench.dut.adapter import DeviceAdapter
from bench.dut.hdk import HdkAdapter
from bench.dut.reference import ReferenceAdapter

ADAPTERS: dict[str, type[DeviceAdapter]] = {"reference": ReferenceAdapter, "hdk": HdkAdapter}
