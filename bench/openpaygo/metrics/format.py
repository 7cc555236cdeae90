"""The Data Format object (the variable orders a condensed request relies on) and the Variable
Type object (type, unit, scale factor...), parsed into typed values.

Both spec versions are covered: orders as arrays (every example) or as index-keyed objects (the
type the text documents, `{"1":"token_count"}`; the keys are positions, gaps are unused slots);
`historical_data_interval` positive or negative; variable types text/integer/float/bool/gps."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from bench.openpaygo.metrics.errors import MetricsError

VARIABLE_TYPES = ("text", "integer", "float", "bool", "gps")
AGGREGATIONS = ("average", "latest", "sum", "min", "max")
MAX_ORDER = 1024  # variables in one order: far beyond any device, small enough to index safely
_INDEX = re.compile(r"0|[1-9][0-9]{0,5}")  # an index key: "0", "7", never "07"
_INTEGERISH = re.compile(r"[+-]?[0-9]+")


def is_index_key(key: str) -> bool:
    return _INDEX.fullmatch(key) is not None


def check_name(name: Any, where: str) -> str:
    """A variable name: a non-empty string that is not an integer (spec WARNING: it would clash
    with the index keys of a data format)."""
    if not isinstance(name, str):
        raise MetricsError("wrong_type", f"a variable name must be a string, got {type_name(name)}", where)
    if not name:
        raise MetricsError("bad_value", "a variable name must not be empty", where)
    if _INTEGERISH.fullmatch(name.strip()):
        raise MetricsError(
            "integer_name",
            f"variable name {name!r} is an integer; names must not be "
            "integers, even as strings (they clash with index keys)",
            where,
        )
    return name


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {int: "an integer", float: "a number", str: "a string", list: "an array", dict: "an object"}.get(
        type(value), type(value).__name__
    )


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class VariableType:
    name: str
    type: str = "text"
    unit: str | None = None
    description: str | None = None
    scale_factor: float | int | None = None
    aggregation_method: str | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"name": self.name}
        if self.type != "text" or self.type_declared:
            out["type"] = self.type
        for key in ("unit", "description", "scale_factor", "aggregation_method"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    # The spec's default type is text, yet its own examples send 0/1 for a variable declared
    # with a name only (overload_alert): only a type that is written down is enforced.
    type_declared: bool = field(default=False, repr=False, compare=False)

    def check(self, value: Any, where: str) -> None:
        """Refuse a value that does not match the declared type (null means "not sent")."""
        if value is None or not self.type_declared:
            return
        if not _CHECKS[self.type](value):
            want = _WANTS[self.type]
            raise MetricsError(
                "type_mismatch",
                f"{type_name(value)} {_short(value)} for a variable of type {self.type}; expected {want}",
                where,
            )

    def scaled(self, value: Any) -> Any:
        """The value multiplied by scale_factor (spec: "for processing and displaying")."""
        if self.scale_factor is None or not is_number(value):
            return value
        return value * self.scale_factor


def _is_float(v: Any) -> bool:
    t = type(v)  # the common case first: a plain float or int (not bool) that is finite
    return (t is float and math.isfinite(v)) or t is int or (t is not bool and is_number(v))


# by declared type: a check made once here, not per value (a request carries hundreds)
_CHECKS: dict[str, Any] = {
    "text": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": _is_float,
    "bool": lambda v: isinstance(v, bool) or (isinstance(v, int) and v in (0, 1)),
    "gps": lambda v: _is_gps(v),
}
_WANTS = {
    "text": "a string",
    "integer": "an integer",
    "float": "a number",
    "bool": "true/false (or 0/1)",
    "gps": "[longitude, latitude] in degrees",
}


def _is_gps(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 2
        and all(is_number(x) for x in v)
        and -180 <= v[0] <= 180
        and -90 <= v[1] <= 90
    )


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_flag(v: Any) -> bool:
    return isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))


# The spec's own variables have fixed types whatever the data format says (rows.py explains a
# refusal): token_count a count, the two "requested" flags true/false or 1/0.
BUILTIN_CHECKS: dict[str, Callable[[Any], bool]] = {
    "token_count": _is_count,
    "active_until_timestamp_requested": _is_flag,
    "active_seconds_left_requested": _is_flag,
}
_ROW_TIME_KEYS = ("timestamp", "relative_time")


def _both(a: Callable[[Any], bool], b: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: a(v) and b(v)  # a row's own time: checked as a time, not a variable


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_VARIABLE_KEYS = ("name", "type", "unit", "description", "scale_factor", "aggregation_method")


def parse_variable(obj: Any, where: str) -> VariableType:
    if not isinstance(obj, dict):
        raise MetricsError("wrong_type", f"a variable type must be an object, got {type_name(obj)}", where)
    for key in obj:
        if key not in _VARIABLE_KEYS:
            raise MetricsError(
                "unknown_field",
                f"unknown key {key[:40]!r}; a variable type has " + ", ".join(_VARIABLE_KEYS),
                f"{where}.{key}",
            )
    if "name" not in obj:
        raise MetricsError("missing_field", 'a variable type needs a "name"', where)
    name = obj["name"]
    if not isinstance(name, str):
        raise MetricsError("wrong_type", f"name must be a string, got {type_name(name)}", f"{where}.name")
    vtype = obj.get("type", "text")
    if vtype not in VARIABLE_TYPES:
        raise MetricsError(
            "bad_value", f"type {_short(vtype)} is not one of {', '.join(VARIABLE_TYPES)}", f"{where}.type"
        )
    for key in ("unit", "description"):
        if key in obj and not isinstance(obj[key], str):
            raise MetricsError("wrong_type", f"{key} must be a string, got {type_name(obj[key])}", f"{where}.{key}")
    scale = obj.get("scale_factor")
    if scale is not None and not is_number(scale):
        raise MetricsError(
            "wrong_type", f"scale_factor must be a number, got {type_name(scale)}", f"{where}.scale_factor"
        )
    agg = obj.get("aggregation_method")
    if agg is not None and agg not in AGGREGATIONS:
        raise MetricsError(
            "bad_value",
            f"aggregation_method {_short(agg)} is not one of {', '.join(AGGREGATIONS)}",
            f"{where}.aggregation_method",
        )
    return VariableType(name, vtype, obj.get("unit"), obj.get("description"), scale, agg, type_declared="type" in obj)


@dataclass(frozen=True)
class DataFormat:
    """Variable orders (None = an unused slot of an index-keyed order), the default interval
    between historical rows (seconds, negative = newest first) and the variables' types.
    `id` is the server's id once registered (None for one embedded in a request)."""

    data_order: tuple[str | None, ...] = ()
    historical_data_order: tuple[str | None, ...] = ()
    historical_data_interval: int | float | None = None
    variables: Mapping[str, VariableType] = field(default_factory=dict)
    id: int | None = None

    def to_json(self, with_id: bool = False) -> dict:
        """The Data Format object in its simple form (orders as arrays unless they have gaps)."""
        out: dict[str, Any] = {}
        if self.data_order:
            out["data_order"] = _order_json(self.data_order)
        if self.historical_data_interval is not None:
            out["historical_data_interval"] = self.historical_data_interval
        if self.historical_data_order:
            out["historical_data_order"] = _order_json(self.historical_data_order)
        if self.variables:
            out["variables"] = {k: v.to_json() for k, v in self.variables.items()}
        if with_id and self.id is not None:
            out["id"] = self.id
        return out

    def with_id(self, id: int) -> DataFormat:
        return DataFormat(
            self.data_order, self.historical_data_order, self.historical_data_interval, self.variables, id
        )

    def variable(self, name: str) -> VariableType | None:
        return self.variables.get(name)

    @cached_property
    def row_checks(self) -> dict[str, Callable[[Any], bool]]:
        """Variable name -> True if a value is allowed (declared type and the built-in variables'
        types), made once per format: a request carries hundreds of values."""
        checks = dict(BUILTIN_CHECKS)
        for name, vt in self.variables.items():
            if not vt.type_declared or name in _ROW_TIME_KEYS:
                continue
            own, builtin = _CHECKS[vt.type], checks.get(name)
            checks[name] = own if builtin is None else _both(own, builtin)
        return checks

    @cached_property
    def data_positions(self) -> tuple[tuple[str | None, Callable[[Any], bool] | None], ...]:
        """(name, its check or None) for each slot of data_order: an array row in one pass."""
        return tuple((n, self.row_checks.get(n) if n is not None else None) for n in self.data_order)

    @cached_property
    def historical_positions(self) -> tuple[tuple[str | None, Callable[[Any], bool] | None], ...]:
        """The same for historical_data_order."""
        return tuple((n, self.row_checks.get(n) if n is not None else None) for n in self.historical_data_order)


def _order_json(order: tuple[str | None, ...]) -> list | dict:
    if all(n is not None for n in order):
        return list(order)
    return {str(i): n for i, n in enumerate(order) if n is not None}


_FORMAT_KEYS = ("data_order", "historical_data_order", "historical_data_interval", "variables", "id")


def parse_order(value: Any, where: str) -> tuple[str | None, ...]:
    if isinstance(value, list):
        names: list[str | None] = [check_name(n, f"{where}[{i}]") for i, n in enumerate(value)]
    elif isinstance(value, dict):
        slots: dict[int, str] = {}
        for key, name in value.items():
            if not is_index_key(key):
                raise MetricsError(
                    "bad_index",
                    f"key {key[:20]!r} of an index-keyed order is not an index (0, 1, 2, ...)",
                    f"{where}.{key}",
                )
            slots[int(key)] = check_name(name, f"{where}.{key}")
        size = max(slots, default=-1) + 1
        if size > MAX_ORDER:
            raise MetricsError("bad_value", f"an order of {size} slots; at most {MAX_ORDER}", where)
        names = [slots.get(i) for i in range(size)]
    else:
        raise MetricsError(
            "wrong_type",
            f"an order must be an array of names (or an index-keyed object), got {type_name(value)}",
            where,
        )
    if len(names) > MAX_ORDER:
        raise MetricsError("bad_value", f"an order of {len(names)} variables; at most {MAX_ORDER}", where)
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n is None:
            continue
        if n in seen:
            raise MetricsError("duplicate_variable", f"{n!r} appears twice in the order", f"{where}[{i}]")
        seen.add(n)
    return tuple(_expand_name(n) if n is not None else None for n in names)


def _expand_name(name: str) -> str:
    from bench.openpaygo.metrics.keys import DATA_SHORT_TO_LONG

    return DATA_SHORT_TO_LONG.get(name, name)


def parse_data_format(obj: Any, where: str = "", *, allow_id: bool = True) -> DataFormat:
    """A Data Format object -> DataFormat, or MetricsError naming the key. An "id" member (the
    openpaygo library keeps one in the format it embeds) is read but not trusted for lookup."""
    if not isinstance(obj, dict):
        raise MetricsError("wrong_type", f"a data format must be an object, got {type_name(obj)}", where or "$")
    pre = f"{where}." if where else ""
    for key in obj:
        if key not in _FORMAT_KEYS or (key == "id" and not allow_id):
            raise MetricsError(
                "unknown_field",
                f"unknown key {key[:40]!r}; a data format has data_order, "
                "historical_data_order, historical_data_interval, variables",
                pre + key,
            )
    data_order = parse_order(obj["data_order"], pre + "data_order") if "data_order" in obj else ()
    hd_order = (
        parse_order(obj["historical_data_order"], pre + "historical_data_order")
        if "historical_data_order" in obj
        else ()
    )
    interval = obj.get("historical_data_interval")
    if interval is not None and not is_number(interval):
        raise MetricsError(
            "wrong_type",
            f"historical_data_interval must be a number of seconds, got {type_name(interval)}",
            pre + "historical_data_interval",
        )
    variables_obj = obj.get("variables", {})
    if not isinstance(variables_obj, dict):
        raise MetricsError(
            "wrong_type", f"variables must be an object, got {type_name(variables_obj)}", pre + "variables"
        )
    variables = {}
    for name, vt in variables_obj.items():
        check_name(name, f"{pre}variables.{name}")
        variables[_expand_name(name)] = parse_variable(vt, f"{pre}variables.{name}")
    fid = obj.get("id")
    if fid is not None and (not isinstance(fid, int) or isinstance(fid, bool)):
        raise MetricsError("wrong_type", f"id must be an integer, got {type_name(fid)}", pre + "id")
    return DataFormat(data_order, hd_order, interval, variables, fid)
