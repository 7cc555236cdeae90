"""The run record: one JSON file per DUT run (reports/<run-id>/record.json), typed here, checked
against a versioned JSON Schema (docs/record.md), and written atomically as the run goes."""

from bench.record.model import (
    AttachmentRecord,
    Counts,
    DutIdentity,
    DutRecord,
    InstrumentRecord,
    MeasurementRecord,
    RunRecord,
    StationRecord,
    TestRecord,
    utc_now,
)
from bench.record.schema import SCHEMA, SCHEMA_ID, SCHEMA_VERSION
from bench.record.writer import RECORD_NAME, write_json_atomic, write_record

__all__ = [
    "AttachmentRecord",
    "Counts",
    "DutIdentity",
    "DutRecord",
    "InstrumentRecord",
    "MeasurementRecord",
    "RunRecord",
    "StationRecord",
    "TestRecord",
    "utc_now",
    "SCHEMA",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "RECORD_NAME",
    "write_json_atomic",
    "write_record",
]
