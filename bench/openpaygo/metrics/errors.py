"""One error type for everything a Metrics request can get wrong, carrying the HTTP status the
server answers with, a stable machine code, a human message and where in the payload it was.

Every code a server can answer is in `CODES` (docs/server.md lists them; a self-test keeps the
two in step), so a device maker can look any answer up."""

from __future__ import annotations

CODES: dict[str, tuple[int, str]] = {
    # 400: the body cannot be read as a Metrics value at all
    "bad_json": (400, "the body is not RFC 8259 JSON in UTF-8 (syntax, NaN/Infinity, duplicate keys)"),
    "bad_cbor": (400, "the body is not one well-formed CBOR item of JSON-like values (no tags)"),
    "too_deep": (400, "nesting deeper than the server accepts"),
    "bad_query": (400, "a query parameter is missing or malformed"),
    "bad_request": (400, "the request could not be processed; it was logged and stored"),
    "bad_http": (400, "not readable as HTTP/1.1 (request line, a header, Content-Length, the target, chunked framing)"),
    "unsupported_transfer_encoding": (400, "a Transfer-Encoding other than chunked"),
    # 403: authentication
    "auth_missing": (403, "the server's policy requires an authentication the request does not carry"),
    "auth_invalid": (403, "the payload signature `a` does not verify with the device key"),
    "auth_malformed": (403, "the payload signature `a` is not a 2-letter method and 1..16 hex digits"),
    "auth_unprotected": (403, "a signed request carries neither timestamp nor request_count, so it could be replayed"),
    "unknown_device": (
        403,
        "the serial number is not in the device registry, and payload auth is required or `a` is present",
    ),
    "jwt_invalid": (
        403,
        "the Authorization JWT is malformed, not HS256, badly signed, expired, not yet valid, or uncheckable (no secret)",
    ),
    # 404/405: routing
    "not_found": (404, "no such route under the server's base path"),
    "method_not_allowed": (405, "the route exists but not for this HTTP method"),
    # 409: replay
    "replay": (409, "the field guarding the request (ts or rc, by its auth) is not above the highest accepted"),
    # 413/415: transport
    "too_large": (413, "the body is larger than 4096 KB"),
    "headers_too_large": (431, "the request line and headers are larger than 16 KB"),
    "unsupported_media_type": (415, "Content-Type is not application/json, json, application/cbor or cbor"),
    # 422: well-formed but not a valid Metrics object
    "not_an_object": (422, "the top-level value is not an object"),
    "missing_field": (422, "a required field is absent"),
    "unknown_field": (422, "a key that this object does not define"),
    "duplicate_field": (422, "one field given twice, under its long and its short key"),
    "wrong_type": (422, "a value of the wrong type"),
    "bad_value": (422, "a value of the right type but out of range or malformed"),
    "no_data": (422, "neither data (d) nor historical_data (hd) carries anything"),
    "both_data_formats": (422, "both data_format_id (df) and data_format (dfo) are given"),
    "no_data_format": (422, "arrays or index keys are used but no data format gives the variable order"),
    "unknown_data_format": (422, "data_format_id (df) names no registered data format"),
    "bad_index": (422, "an array position or index key has no variable in the data format's order"),
    "integer_name": (422, "a variable name that is an integer (clashes with index keys)"),
    "duplicate_variable": (422, "the same variable is given twice in one row or order"),
    "no_time": (422, "a historical row has no timestamp/relative_time and the format defines no interval"),
    "type_mismatch": (422, "a value does not match its declared variable type"),
    # 503: the bench itself
    "storage_unavailable": (503, "the request could not be stored, so it was not answered"),
}


class MetricsError(Exception):
    """A refused Metrics request: HTTP `status`, stable `code` (a key of CODES), `message` for
    people, `where` = the JSON path of the offending part ("hd[3].battery_voltage", "" if none).

    Messages never carry secrets: they name fields and types, never key material."""

    def __init__(self, code: str, message: str, where: str = "", status: int | None = None) -> None:
        if code not in CODES:
            raise ValueError(f"unknown Metrics error code {code!r}")
        self.status = CODES[code][0] if status is None else status
        self.code = code
        self.message = message
        self.where = where
        super().__init__(f"{self.status} {code}: {message}" + (f" (at {where})" if where else ""))

    def body(self) -> dict:
        """The JSON error body a server answers with."""
        return {"error": self.code, "message": self.message, "where": self.where}
