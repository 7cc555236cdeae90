"""Reading the rig file's values: TOML types to Python ones, range checks against the schema, the
device key from wherever it is given; every mistake a one-line RigError that never shows a key."""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.rig.model import RigError
from bench.rig.schema import _SCHEMA, _Field
from bench.secret import Secret, url_shown

# Reading values

_TOML_TYPE = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
_HEXRUN = re.compile(r"[0-9A-Fa-f]{16,}")
_HEX32 = re.compile(r"[0-9A-Fa-f]{32}")


def _kind(value: Any) -> str:
    name = next((n for t, n in _TOML_TYPE.items() if isinstance(value, t)), type(value).__name__)
    return ("an " if name[0] in "aeiou" else "a ") + name


def _got(value: Any) -> str:
    """How a wrong value is shown: short, and never anything that might be a key."""
    if isinstance(value, (dict, list)):
        return _kind(value)
    if isinstance(value, str) and _HEXRUN.search(value):
        return f"{_kind(value)} of {len(value)} characters (not shown: it looks like a key)"
    shown = ("true" if value else "false") if isinstance(value, bool) else repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{shown} ({_TOML_TYPE.get(type(value), type(value).__name__)})"


def _convert(fld: _Field, value: Any) -> Any:
    """The value as the field's Python type, or raise ValueError if its TOML type is wrong."""
    if fld.kind in ("str", "secret", "url") and isinstance(value, str):
        return value
    if fld.kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if fld.kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
    if fld.kind == "bool" and isinstance(value, bool):
        return value
    if fld.kind == "strlist" and isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise ValueError


def _field_value(where: str, key: str, fld: _Field, value: Any) -> Any:
    """Type-convert and range-check one value; RigError naming the key otherwise."""
    try:
        v = _convert(fld, value)
    except ValueError:
        got = _kind(value) if fld.kind == "secret" else _got(value)  # a bad key is still a key
        raise RigError(where, key, f"got {got}; expected {fld.expected}") from None
    if fld.kind == "secret":
        return _secret(where, key, v, "")
    if fld.kind == "strlist":
        bad = next((item for item in v if not fld.check(item)), None)
        if bad is not None:
            raise RigError(where, key, f"got {_got(bad)} in the list; expected {fld.expected}")
    elif not fld.check(v):
        shown_value = _got(value) if fld.kind != "url" else _got(url_shown(value))
        raise RigError(where, key, f"got {shown_value}; expected {fld.expected}")
    return v


def _secret(where: str, key: str, text: str, origin: str) -> Secret:
    """A device key: 32 hex characters. The error counts characters and never shows them."""
    text = text.strip()
    if not _HEX32.fullmatch(text):
        hexness = "" if all(c in "0123456789abcdefABCDEF" for c in text) else ", not all hex"
        raise RigError(
            where,
            key,
            f"{origin}not 32 hex characters (got {len(text)} characters{hexness}); "
            "expected 32 hex characters (16 bytes)",
        )
    return Secret(text.lower(), "dut.secret_key")


def _unknown(where: str, key: str, valid: tuple[str, ...] | list[str], what: str) -> RigError:
    near = difflib.get_close_matches(key.rpartition(".")[2], valid, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    return RigError(where, key, f"unknown {what}{hint}; expected one of {', '.join(valid)}")


def _read_section(where: str, doc: dict, name: str, errors: list[RigError] | None = None) -> dict[str, Any]:
    """The section's given keys, converted and checked (defaults are applied by the caller).
    RigError at the first bad key; with `errors`, every bad key's error is appended there and the
    good keys are returned (`paygo-bench check` lists them all)."""
    table = doc.get(name, {})
    if not isinstance(table, dict):
        error = RigError(where, name, f"got {_got(table)}; expected a table [{name}]")
        if errors is None:
            raise error
        errors.append(error)
        return {}
    schema = _SCHEMA[name]
    values: dict[str, Any] = {}
    for key in table:
        try:
            if key not in schema:
                raise _unknown(where, f"{name}.{key}", list(schema), "key")
            values[key] = _field_value(where, f"{name}.{key}", schema[key], table[key])
        except RigError as e:
            if errors is None:
                raise
            errors.append(e)
    return values


def _with_defaults(name: str, given: dict[str, Any]) -> dict[str, Any]:
    return {key: given.get(key, fld.default) for key, fld in _SCHEMA[name].items()}


# ---------------------------------------------------------------------------------------------
# The DUT's identity: [dut] keys, a key from env/file, or a row of an OpenPAYGO device list.

_KEY_SOURCES = ("secret_key", "secret_key_env", "secret_key_file")


def _key_from_sources(where: str, given: dict, base: Path, env: Mapping[str, str]) -> Secret | None:
    """The key from whichever one of secret_key / _env / _file was given, None if none was."""
    sources = [k for k in _KEY_SOURCES if k in given]
    if len(sources) > 1:
        raise RigError(
            where,
            "dut." + sources[1],
            f"given together with dut.{sources[0]}; "
            "expected exactly one of secret_key, secret_key_env, secret_key_file",
        )
    if not sources:
        return None
    if sources == ["secret_key"]:
        return given["secret_key"]
    if sources == ["secret_key_env"]:
        var = given["secret_key_env"]
        if var not in env:
            raise RigError(
                where,
                "dut.secret_key_env",
                f"environment variable {var} is not set; expected it to hold the device key (32 hex characters)",
            )
        return _secret(where, "dut.secret_key_env", env[var], f"environment variable {var}: ")
    file = _relative(base, given["secret_key_file"])
    _warn_if_shared(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({type(exc).__name__})"
        raise RigError(
            where, "dut.secret_key_file", f"{file}: {why}; expected a file holding the device key (32 hex characters)"
        ) from None
    return _secret(where, "dut.secret_key_file", text, f"{file}: ")


class KeyFileWarning(UserWarning):
    """A device key file other users of this host can read."""


def _warn_if_shared(file: Path) -> None:
    """A key file readable by its group or by others is a key every user of the host has (POSIX
    modes; on Windows, where files have no such bits, nothing is said)."""
    try:
        mode = file.stat().st_mode
    except OSError:
        return  # not there: the read below says so
    if os.name == "posix" and mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.warn(
            KeyFileWarning(
                f"{file}: the device key file is readable by "
                f"{' and '.join(w for w, bit in (('its group', stat.S_IRGRP), ('others', stat.S_IROTH)) if mode & bit)} "
                f"(mode {stat.S_IMODE(mode):04o}); make it the owner's alone: chmod 600 {file}"
            ),
            stacklevel=2,
        )


def _relative(base: Path, name: str) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else base / path
