"""Read one record.json into the history's rows, or say in one line why it cannot be read.

A record is checked before anything is taken from it (docs/record.md, Versioning): its `schema`
and the major of `schema_version` first, then the JSON Schema of that major when jsonschema is
installed (a test extra), and always the fields the history uses, each with an error naming it.
Records of 1.x (before verdicts) are read too: their status becomes the verdict it stood for.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from bench.history.model import V1_LIFECYCLE, V1_VERDICTS, MeasurementRow, RunData, RunRow, TestRow
from bench.record.model import Counts
from bench.record.schema import SCHEMA, SCHEMA_ID, schema_v1

READS_MAJORS = ("1", "2")


class RecordSkipped(Exception):
    """The record cannot be indexed; the message is one line saying why."""


def parse_record(data: bytes, record_path: str, sha256: str) -> RunData:
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RecordSkipped(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise RecordSkipped(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_ID:
        raise RecordSkipped(f'not a paygo-bench record (no "schema": "{SCHEMA_ID}")')
    version = str(doc.get("schema_version", ""))
    major = version.split(".")[0]
    if major not in READS_MAJORS:
        raise RecordSkipped(
            f"schema_version {version or '(none)'}: this bench reads "
            f"{' and '.join(m + '.x' for m in READS_MAJORS)} records"
        )
    _validate(doc, SCHEMA if major == "2" else schema_v1())
    try:
        return _rows(doc, record_path, sha256, major)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RecordSkipped(f"unreadable field: {type(e).__name__}: {e}") from None


def _validate(doc: dict, schema: dict) -> None:
    try:
        import jsonschema
    except ImportError:  # not an install dependency: the field checks in _rows still apply
        return
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        message = error.message.splitlines()[0] if error.message else "invalid"
        if len(message) > 200:
            message = message[:197] + "..."
        raise RecordSkipped(f"does not match the record schema at {where}: {message}")


def _time(text: Any) -> datetime:
    when = datetime.fromisoformat(str(text))
    if when.tzinfo is None:
        raise ValueError(f"time without a zone: {text}")
    return when.astimezone(UTC)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _outcome_fields(doc: dict, major: str) -> dict[str, Any]:
    """Lifecycle, verdict and suite: as a 2.x record says them, or as a 1.x status stood for them."""
    if major == "1":
        status = str(doc["status"])
        return {
            "status": V1_LIFECYCLE.get(status, "finished"),
            "status_reason": doc.get("status_reason"),
            "verdict": V1_VERDICTS.get(status),
            "verdict_reason": doc.get("status_reason"),
            "suite": None,
            "suite_required": None,
            "suite_covered": None,
        }
    suite = doc["suite"]
    return {
        "status": str(doc["status"]),
        "status_reason": doc.get("status_reason"),
        "verdict": doc.get("verdict"),
        "verdict_reason": doc.get("verdict_reason"),
        "suite": str(suite["name"]),
        "suite_required": int(suite["required"]),
        "suite_covered": int(suite["covered"]),
    }


def hash_of_tests(nodeids: Any) -> str:
    """One hash for the set of tests a run was given: runs that share it ran the same tests."""
    return hashlib.sha256("\n".join(sorted(set(nodeids))).encode("utf-8")).hexdigest()


def _rows(doc: dict, record_path: str, sha256: str, major: str = "2") -> RunData:
    station, dut, counts = doc["station"], doc["dut"], doc["counts"]
    ident = dut.get("identity") or {}
    run = RunRow(
        run_id=str(doc["run_id"]),
        record_path=record_path,
        record_sha256=sha256,
        station=str(station["id"]),
        rig_file=station.get("rig_file"),
        rig_sha256=station.get("rig_sha256") or None,
        sim_faults=tuple(str(f) for f in station.get("sim_faults") or ()),
        operator=str(station.get("operator") or ""),
        **_outcome_fields(doc, major),
        tests_sha256=hash_of_tests(str(t["nodeid"]) for t in doc["tests"]),
        started_at=_time(doc["started_at"]),
        ended_at=_time(doc["ended_at"]) if doc.get("ended_at") else None,
        updated_at=_time(doc["updated_at"]) if doc.get("updated_at") else None,
        bench_version=str(doc["bench"]["version"]),
        dut_serial=str(ident.get("serial_number") or dut.get("profile_serial") or ""),
        dut_model=str(ident.get("model") or dut.get("hardware_model") or ""),
        dut_firmware=str(ident.get("firmware") or dut.get("firmware_version") or ""),
        counts=Counts(**{f.name: int(counts.get(f.name, 0)) for f in fields(Counts)}),
    )
    tests, measurements = [], []
    for t in doc["tests"]:
        nodeid = str(t["nodeid"])
        tests.append(TestRow(nodeid, str(t["outcome"]), t.get("reason"), _number(t.get("duration_s"))))
        for m in t.get("measurements") or ():
            value = m.get("value")
            number = _number(value)
            text = None if number is not None or value is None else str(value)
            measurements.append(
                MeasurementRow(
                    nodeid,
                    str(m["name"]),
                    number,
                    text,
                    str(m.get("unit") or ""),
                    _number(m.get("low")),
                    _number(m.get("high")),
                    str(m.get("outcome") or "PASS"),
                )
            )
    return RunData(run, tuple(tests), tuple(measurements))
