"""The rows of a Metrics request expanded to the simple form: a `d` object or array, and the
`hd` rows with their times (`timestamp`, `relative_time` or `historical_data_interval`), keys
short or long, arrays and index keys checked against the data format's order and declared
types. Every refusal is a `MetricsError` naming the field."""

from __future__ import annotations

from typing import Any

from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.format import (
    BUILTIN_CHECKS,
    DataFormat,
    check_name,
    is_index_key,
    is_number,
    type_name,
)
from bench.openpaygo.metrics.keys import DATA_SHORT_TO_LONG, ROW_RELATIVE_TIME, ROW_TIMESTAMP
from bench.openpaygo.metrics.timestamps import MAX_UNIX, parse_time, whole


def _order_of(fmt: DataFormat | None, which: str) -> tuple[str | None, ...]:
    if fmt is None:
        return ()
    return fmt.data_order if which == "data" else fmt.historical_data_order


def _array_row(value: list, positions: tuple) -> dict[str, Any] | None:
    """An array row whose every value fits its slot, in one pass (`DataFormat.*_positions`);
    None if any does not: `expand` then finds the refusal."""
    if len(value) > len(positions):
        return None
    row = {}
    for (name, ok), v in zip(positions, value):
        if v is None:
            continue
        if name is None or (ok is not None and not ok(v)):
            return None
        row[name] = v
    return row


def expand(value: Any, fmt: DataFormat | None, which: str, where: str) -> dict[str, Any]:
    """One row (the `data` object/array or a historical row) -> {name: value}."""
    if type(value) is list and fmt is not None:
        fast = _array_row(value, fmt.data_positions if which == "data" else fmt.historical_positions)
        if fast is not None:
            return fast
    order = _order_of(fmt, which)
    order_name = "data_order" if which == "data" else "historical_data_order"
    out: dict[str, Any] = {}
    seen: set[str] = set()
    if isinstance(value, list):
        if not order:
            raise MetricsError("no_data_format", f"an array needs a data format with a {order_name} (df or dfo)", where)
        if len(value) > len(order):
            raise MetricsError(
                "bad_index",
                f"{len(value)} values but the {order_name} has {len(order)} variables",
                f"{where}[{len(order)}]",
            )
        for i, v in enumerate(value):
            if v is None:
                continue
            name = order[i]
            if name is None:
                raise MetricsError("bad_index", f"position {i} is an unused slot of the {order_name}", f"{where}[{i}]")
            out[name] = v
    elif isinstance(value, dict):
        for key, v in value.items():
            if is_index_key(key):
                if not order:
                    raise MetricsError(
                        "no_data_format",
                        f"index key {key!r} needs a data format with a {order_name} (df or dfo)",
                        f"{where}.{key}",
                    )
                idx = int(key)
                if idx >= len(order) or order[idx] is None:
                    raise MetricsError(
                        "bad_index",
                        f"index {idx} has no variable in the {order_name} ({len(order)} slots)",
                        f"{where}.{key}",
                    )
                name = order[idx]
            else:
                name = DATA_SHORT_TO_LONG.get(check_name(key, f"{where}.{key}"), key)
            if name in seen:
                raise MetricsError("duplicate_variable", f"{name!r} given twice in one row", f"{where}.{key}")
            seen.add(name)  # type: ignore[arg-type]
            if v is not None:
                out[name] = v  # type: ignore[index]
    else:
        raise MetricsError("wrong_type", f"a row must be an object or an array, got {type_name(value)}", where)
    _check_types(out, fmt, which, where)
    return out


def _check_types(row: dict[str, Any], fmt: DataFormat | None, which: str, where: str) -> None:
    """Refuse a value of the wrong type: one look-up per value in the format's compiled checks,
    and only when one fails, `_refuse_types` finds the refusal in the order it always had."""
    checks = fmt.row_checks if fmt is not None else BUILTIN_CHECKS
    for name, v in row.items():
        ok = checks.get(name)
        if ok is not None and not ok(v):
            _refuse_types(row, fmt, where)  # the old checks decide: they raise the refusal
            return


def _refuse_types(row: dict[str, Any], fmt: DataFormat | None, where: str) -> None:
    tc = row.get("token_count")
    if tc is not None and (not isinstance(tc, int) or isinstance(tc, bool) or tc < 0):
        raise MetricsError(
            "type_mismatch", f"token_count must be a whole number >= 0, got {type_name(tc)}", f"{where}.token_count"
        )
    for flag in ("active_until_timestamp_requested", "active_seconds_left_requested"):
        v = row.get(flag)
        if v is not None and not (isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))):
            raise MetricsError(
                "type_mismatch", f"{flag} must be true/false (or 1/0), got {type_name(v)}", f"{where}.{flag}"
            )
    if fmt is not None:
        for name, v in row.items():
            vt = fmt.variables.get(name)
            if vt is not None and name not in (ROW_TIMESTAMP, ROW_RELATIVE_TIME):
                vt.check(v, f"{where}.{name}")


def historical(rows: list, fmt: DataFormat | None, base: int | float, where: str) -> tuple[dict[str, Any], ...]:
    """Rows expanded, each given its absolute time: its own `timestamp` (which resets the base),
    else `relative_time` after the previous row (the first: after the base), else the format's
    interval after the previous row (the first: the base itself)."""
    interval = fmt.historical_data_interval if fmt is not None else None
    positions = fmt.historical_positions if fmt is not None else None
    out = []
    prev: int | float | None = None
    for i, item in enumerate(rows):
        row = _array_row(item, positions) if positions is not None and type(item) is list else None
        if row is not None and interval is not None and ROW_TIMESTAMP not in row and ROW_RELATIVE_TIME not in row:
            # the condensed rows' usual case, without building a `where` for a refusal
            if prev is None:
                t = base
            else:
                t = prev + interval
                t = (
                    whole(t)
                    if -MAX_UNIX <= t <= MAX_UNIX
                    else _computed(t, "historical_data_interval", f"{where}[{i}]")
                )
            row[ROW_TIMESTAMP] = t
            prev = t
            out.append(row)
            continue
        w = f"{where}[{i}]"
        if row is None:
            row = expand(item, fmt, "historical", w)
        if ROW_TIMESTAMP in row:
            t = parse_time(row[ROW_TIMESTAMP], f"{w}.timestamp")
            if ROW_RELATIVE_TIME in row:  # an explicit time wins over a relative one
                _check_rel(row, w)
                del row[ROW_RELATIVE_TIME]
        elif ROW_RELATIVE_TIME in row:
            rel = _check_rel(row, w)
            t = _computed((prev if prev is not None else base) + rel, "relative_time", f"{w}.relative_time")
            del row[ROW_RELATIVE_TIME]
        elif interval is not None:
            t = base if prev is None else _computed(prev + interval, "historical_data_interval", w)
        else:
            raise MetricsError(
                "no_time",
                "this row has no timestamp or relative_time, and the data format defines no historical_data_interval",
                w,
            )
        row[ROW_TIMESTAMP] = t
        prev = t
        out.append(row)
    return tuple(out)


def _computed(t: int | float, step: str, where: str) -> int | float:
    """A row time made from the previous one + a step must stay within the years a time can show
    (either sign, as `parse_time(signed=True)`: a negative interval from ts 0 goes before 1970):
    1e300 seconds later is no time a store, a query or a report can hold."""
    if not -MAX_UNIX <= t <= MAX_UNIX:
        shown = str(t) if len(str(t)) <= 24 else str(t)[:20] + "..."
        raise MetricsError(
            "bad_value", f"this row's time, the previous one + {step}, is {shown}: outside +-{MAX_UNIX}", where
        )
    return whole(t)


def _check_rel(row: dict[str, Any], where: str) -> int | float:
    rel = row[ROW_RELATIVE_TIME]
    if not is_number(rel):
        raise MetricsError(
            "wrong_type", f"relative_time must be a number of seconds, got {type_name(rel)}", f"{where}.relative_time"
        )
    return rel
