"""The record's JSON Schema (draft 2020-12): the contract with whoever reads record.json (a lab's
LIMS, certification tooling). docs/record.schema.json is a copy of SCHEMA for people and other
languages; a self-test keeps the two identical. docs/record.md documents every field.

Versioning (semver of the schema, not of the bench): an additive change (a new optional field, a
new enum value a reader can ignore) bumps the minor; removing or changing the meaning of a field
bumps the major. Objects allow unknown properties so a 2.x reader accepts any later 2.y record.

2.0 (from 1.0): the run's verdict (`verdict`, `verdict_reason`) and its suite profile's coverage
(`suite`) are new; `status` is now the lifecycle only (running, finished, interrupted) and
`exit_status` the bench's code for the verdict. The 1.0 schema is kept, frozen, as
record-1.schema.json in this package, for readers of old records (bench/history).

2.1 (from 2.0): `safe_state`, where the supply was left when the run ended, as measured.

2.2 (from 2.1): a test's `counterexample`, the shrunk steps of a failing random walk and the
command that replays them (null for every other test).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

from bench.record.verdict import EXIT_CODES, VERDICTS

SCHEMA_VERSION = "2.2"
SCHEMA_ID = "paygo-bench/record"
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "record.schema.json"

_UTC = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$", "format": "date-time"}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_OPT_STR = {"type": ["string", "null"]}
_NUM_OR_NULL = {"type": ["number", "null"]}

SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://paygo-bench.invalid/schemas/record-2.json",
    "title": "paygo-bench run record",
    "description": "One DUT run on one station: identity, every test's outcome, every measurement, "
    "every file by hash. Documented in docs/record.md.",
    "type": "object",
    "required": [
        "schema",
        "schema_version",
        "run_id",
        "verdict",
        "verdict_reason",
        "suite",
        "status",
        "status_reason",
        "exit_status",
        "started_at",
        "ended_at",
        "updated_at",
        "duration_s",
        "bench",
        "station",
        "dut",
        "instruments",
        "counts",
        "tests",
        "attachments",
    ],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "schema_version": {"type": "string", "pattern": r"^2\.\d+$"},
        "run_id": {"type": "string", "minLength": 1},
        "verdict": {"enum": [*VERDICTS, None]},
        "verdict_reason": _OPT_STR,
        "suite": {"$ref": "#/$defs/suite"},
        "status": {"enum": ["running", "finished", "interrupted"]},
        "status_reason": _OPT_STR,
        "exit_status": {"type": ["integer", "null"]},
        "started_at": _UTC,
        "ended_at": {"anyOf": [_UTC, {"type": "null"}]},
        "updated_at": _UTC,
        "duration_s": {"type": ["number", "null"], "minimum": 0},
        "bench": {
            "type": "object",
            "required": ["version", "python", "pytest"],
            "properties": {
                "version": {"type": "string", "minLength": 1},
                "python": {"type": "string"},
                "pytest": {"type": "string"},
            },
        },
        "station": {"$ref": "#/$defs/station"},
        "dut": {"$ref": "#/$defs/dut"},
        "instruments": {"type": "array", "items": {"$ref": "#/$defs/instrument"}},
        "spec": {
            "description": "the test spec that judged the measurements (docs/spec.md); null: the tests' own limits",
            "type": ["object", "null"],
            "required": ["path", "product", "version", "sha256"],
            "properties": {
                "path": {"type": "string"},
                "product": {"type": "string"},
                "version": {"type": "string"},
                "sha256": _SHA256,
            },
        },
        "ledger": {
            "description": "how the run knew the DUT's token state (docs/ledger.md); null: the rig never came up",
            "type": ["object", "null"],
            "required": ["path", "mode", "bring_up", "findings"],
            "properties": {
                "path": {"type": "string"},
                "mode": {"enum": ["fresh", "ledger"]},
                "bring_up": {"type": "string"},
                "findings": {"type": "array", "items": {"type": "string"}},
            },
        },
        "safe_state": {
            "description": "where the supply was left when the run ended, as measured (2.1); null while "
            "running, or when the run never opened the PSU",
            "anyOf": [{"$ref": "#/$defs/safe_state"}, {"type": "null"}],
        },
        "counts": {"$ref": "#/$defs/counts"},
        "tests": {"type": "array", "items": {"$ref": "#/$defs/test"}},
        "attachments": {"type": "array", "items": {"$ref": "#/$defs/attachment"}},
    },
    "allOf": [
        {  # an ended run has an end, a verdict, an exit status and a duration; a running one none yet
            "if": {"properties": {"status": {"const": "running"}}},
            "then": {
                "properties": {
                    "ended_at": {"type": "null"},
                    "exit_status": {"type": "null"},
                    "verdict": {"type": "null"},
                    "verdict_reason": {"type": "null"},
                }
            },
            "else": {
                "properties": {
                    "ended_at": _UTC,
                    "exit_status": {"type": "integer"},
                    "duration_s": {"type": "number"},
                    "verdict": {"enum": list(VERDICTS)},
                    "verdict_reason": {"type": "string", "minLength": 1},
                }
            },
        },
        *(
            {  # each verdict has its own exit code
                "if": {"properties": {"verdict": {"const": verdict}}, "required": ["verdict"]},
                "then": {"properties": {"exit_status": {"const": code}}},
            }
            for verdict, code in EXIT_CODES.items()
        ),
    ],
    "$defs": {
        "suite": {
            "description": "the suite profile (bench/suites) and how many of its required tests ran and passed",
            "type": "object",
            "required": ["name", "title", "required", "covered", "missing"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "title": {"type": "string"},
                "required": {"type": "integer", "minimum": 0},
                "covered": {"type": "integer", "minimum": 0},
                "missing": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["nodeid", "why"],
                        "properties": {
                            "nodeid": {"type": "string", "minLength": 1},
                            "why": {"type": "string", "minLength": 1},
                        },
                    },
                },
            },
        },
        "station": {
            "type": "object",
            "required": ["id", "location", "host", "operator", "rig_file", "rig_sha256", "virtual", "sim_faults"],
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "location": {"type": "string"},
                "host": {"type": "string"},
                "operator": {"type": "string"},
                "rig_file": _OPT_STR,
                "rig_sha256": {"anyOf": [_SHA256, {"type": "null"}]},
                "virtual": {"type": "boolean"},
                "sim_faults": {"type": "array", "items": {"type": "string"}},
            },
        },
        "identity": {
            "type": "object",
            "required": ["source", "model", "firmware", "protocol", "serial_number"],
            "properties": {
                "source": {"enum": ["ID", "boot banner"]},
                "model": _OPT_STR,
                "firmware": _OPT_STR,
                "protocol": _OPT_STR,
                "serial_number": _OPT_STR,
                "capabilities": {"type": ["array", "null"], "items": {"type": "string"}},
            },
        },
        "dut": {
            "type": "object",
            "required": ["adapter", "profile_serial", "hardware_model", "firmware_version", "identity"],
            "properties": {
                "adapter": {"type": "string"},
                "profile_serial": {"type": "string"},
                "hardware_model": {"type": "string"},
                "firmware_version": {"type": "string"},
                "identity": {"anyOf": [{"$ref": "#/$defs/identity"}, {"type": "null"}]},
            },
        },
        "instrument": {
            "type": "object",
            "required": ["role", "resource", "profile", "channel", "idn"],
            "properties": {
                "role": {"type": "string"},
                "resource": {"type": "string"},
                "profile": {"type": "string"},
                "channel": {"type": "integer"},
                "idn": _OPT_STR,
            },
        },
        "safe_state": {
            "type": "object",
            "required": ["wanted", "confirmed", "volts", "output", "detail", "checked_at"],
            "properties": {
                "wanted": {"enum": ["off", "on", "unchanged"]},
                "confirmed": {"type": ["boolean", "null"]},
                "volts": _NUM_OR_NULL,
                "output": {"enum": ["on", "off", None]},
                "detail": {"type": "string", "minLength": 1},
                "checked_at": _UTC,
            },
            "if": {"properties": {"wanted": {"const": "unchanged"}}},
            "then": {"properties": {"confirmed": {"type": "null"}}},
            "else": {"properties": {"confirmed": {"type": "boolean"}}},
        },
        "counts": {
            "type": "object",
            "required": ["collected", "passed", "failed", "error", "skipped", "not_covered", "interrupted"],
            "properties": {
                k: {"type": "integer", "minimum": 0}
                for k in ("collected", "passed", "failed", "error", "skipped", "not_covered", "interrupted")
            },
        },
        "measurement": {
            "type": "object",
            "required": ["name", "value", "unit", "low", "high", "expected", "limits", "outcome"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "value": {"type": ["number", "string", "boolean", "null"]},
                "unit": {"type": "string"},
                "low": _NUM_OR_NULL,
                "high": _NUM_OR_NULL,
                "expected": {"type": ["string", "number", "boolean", "null"]},
                "limits": {"type": "string"},
                "outcome": {"enum": ["PASS", "FAIL"]},
                "doc": {"type": "string"},
                "marginal": {"type": "boolean", "description": "a PASS inside the test spec's marginal band"},
                "spec_entry": {"type": ["string", "null"], "description": "the test spec entry that judged it"},
            },
        },
        "attachment": {
            "type": "object",
            "required": ["path", "title", "sha256", "size"],
            "properties": {
                "path": {"type": "string", "minLength": 1},
                "title": {"type": "string"},
                "sha256": _SHA256,
                "size": {"type": "integer", "minimum": 0},
            },
        },
        "counterexample": {
            "type": "object",
            "description": "a failing random walk (test_random_walk.py), shrunk: docs/record.md",
            "required": ["seed", "walk_steps", "steps", "signature", "reproduced", "replays", "replay"],
            "properties": {
                "seed": {"type": ["integer", "null"]},
                "walk_steps": {"type": "integer", "minimum": 1},
                "steps": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["step", "does", "code", "model", "dut", "problems", "skipped"],
                        "properties": {
                            "step": {"type": "string", "minLength": 1},
                            "does": {"type": "string"},
                            "code": _OPT_STR,
                            "model": _OPT_STR,
                            "dut": _OPT_STR,
                            "problems": {"type": "array", "items": {"type": "string"}},
                            "skipped": _OPT_STR,
                        },
                    },
                },
                "signature": {"type": "string"},
                "reproduced": {"type": "boolean"},
                "replays": {"type": "integer", "minimum": 0},
                "shrinking_complete": {"type": "boolean"},
                "note": _OPT_STR,
                "replay": {"type": "string", "minLength": 1},
            },
        },
        "test": {
            "type": "object",
            "required": [
                "nodeid",
                "outcome",
                "reason",
                "started_at",
                "ended_at",
                "duration_s",
                "measurements",
                "attachments",
            ],
            "properties": {
                "nodeid": {"type": "string", "minLength": 1},
                "outcome": {"enum": ["passed", "failed", "error", "skipped", "not covered", "interrupted"]},
                "reason": _OPT_STR,
                "started_at": _UTC,
                "ended_at": _UTC,
                "duration_s": {"type": "number", "minimum": 0},
                "measurements": {"type": "array", "items": {"$ref": "#/$defs/measurement"}},
                "attachments": {"type": "array", "items": {"$ref": "#/$defs/attachment"}},
                "counterexample": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/counterexample"}]},
            },
            "if": {"properties": {"outcome": {"enum": ["failed", "error", "skipped", "not covered"]}}},
            "then": {"properties": {"reason": {"type": "string", "minLength": 1}}},
        },
    },
}


@cache
def schema_v1() -> dict:
    """The 1.0 schema, frozen: what a 1.x record is checked against."""
    return json.loads(resources.files(__package__).joinpath("record-1.schema.json").read_text(encoding="utf-8"))


def schema_json() -> str:
    """The text of docs/record.schema.json (what the self-test compares the file with)."""
    return json.dumps(SCHEMA, indent=2, ensure_ascii=False) + "\n"


def write_schema_file() -> Path:
    """Regenerate docs/record.schema.json after changing SCHEMA:
    python -c "from bench.record.schema import write_schema_file; write_schema_file()"."""
    SCHEMA_FILE.write_text(schema_json(), encoding="utf-8", newline="\n")
    return SCHEMA_FILE
