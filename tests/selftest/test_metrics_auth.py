"""Metrics payload signatures: the reference vectors reproduce, openpaygo's own requests verify
with each method, our replies verify with openpaygo's code, and the reference's bugs (unpadded
hex, re-dumped JSON) are tolerated on input rather than inherited."""

from __future__ import annotations

import json

import pytest
from openpaygo import AuthMethod, MetricsRequestHandler, MetricsResponseHandler
from openpaygo.metrics_shared import OpenPAYGOMetricsShared

from bench.openpaygo.metrics.auth import (
    SignedFields,
    hex_of,
    reply_signature,
    request_signature,
    siphash64,
    verify_reply,
    verify_request,
)
from bench.openpaygo.metrics.codec import parse_body
from bench.openpaygo.metrics.condense import build_request
from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.format import parse_data_format
from bench.openpaygo.metrics.reply import MetricsReply
from bench.secret import Secret
from bench.server.app import replay_guard

KEY = "dac86b1a29ab82edc5fbbc41ec9530f6"  # docs/metrics.md "Reference vectors"
SN, TS = "A111222", 1611583070
D = [13, False, "1.14.2"]
HD = [[17.5, 12.5, 2.2, 3.2], [15.7, 12.6, 2.2, 3.2, 0.7]]
FMT = {
    "id": 12,
    "data_order": ["token_count", "tampered", "firmware_version"],
    "historical_data_order": [
        "panel_voltage",
        "battery_voltage",
        "panel_current",
        "battery_current",
        "usb_load_1_current",
    ],
    "historical_data_interval": -60,
}
FORMAT = parse_data_format(FMT).with_id(12)


@pytest.mark.parametrize(
    "method, expected",
    [
        ("sa", "safc4499591b87ba1c"),
        ("ta", "tabdc447493edff1ef"),
        ("da", "da64c00b295ccf6ef5"),
        ("ra", "ra4b2b119e6bb63f1a"),
    ],
)
def test_request_vectors(method, expected):
    assert request_signature(SignedFields(SN, TS, None, D, HD), method, KEY) == expected
    assert request_signature(SignedFields(SN, TS, None, D, HD), method, Secret(KEY)) == expected


def test_counter_auth_vector():
    assert request_signature(SignedFields(SN, None, 132, D, HD), "ca", KEY) == "ca8ef5c49541424d2d"


def test_reply_vectors():
    assert reply_signature(KEY, SN, timestamp=TS, token_list=[111222333]) == "da6e7f5e9bc45cf1f3"
    assert reply_signature(KEY, SN, timestamp=TS, active_until_timestamp=1616081621) == "dab9176324754456bd"


def test_the_vector_request_verifies_as_openpaygo_round_trips_it():
    body = (
        b'{"sn":"A111222","df":12,"ts":1611583070,"rc":5,"d":[13,false,"1.14.2"],'
        b'"hd":[[17.5,12.5,2.2,3.2],[15.7,12.6,2.2,3.2,0.7]],"a":"ra2e37b33141627b39"}'
    )
    req = parse_body(body, "json", formats={12: FORMAT}.get, received_at=TS)
    assert verify_request(req.signed, req.auth, KEY).method == "ra"


@pytest.mark.parametrize("method", ["sa", "ta", "ca", "da", "ra"])
@pytest.mark.parametrize("simple", [True, False])
def test_openpaygo_requests_verify_with_each_method(method, simple):
    h = MetricsRequestHandler(SN, data_format=dict(FMT), secret_key=KEY, auth_method=method)
    h.set_timestamp(TS)
    h.set_request_count(132)
    h.set_data({"token_count": 13, "tampered": False, "firmware_version": "1.14.2"})
    h.set_historical_data([{"panel_voltage": 17.5}, {"panel_voltage": 15.7, "usb_load_1_current": 0.7}])
    payload = h.get_simple_request_payload() if simple else h.get_condensed_request_payload()
    req = parse_body(payload.encode(), "json", formats={12: FORMAT}.get, received_at=TS)
    assert verify_request(req.signed, req.auth, KEY).variant == "reference"
    with pytest.raises(MetricsError) as info:
        verify_request(req.signed, req.auth, "00" * 16)
    assert (info.value.status, info.value.code) == (403, "auth_invalid")


@pytest.mark.parametrize("method", ["sa", "ta", "ca", "da", "ra"])
def test_our_signed_requests_verify_with_openpaygo(method):
    built = build_request(
        SN,
        data={"token_count": 13, "tampered": False},
        timestamp=TS,
        request_count=3,
        historical_data=[{"panel_voltage": 1.5}],
        data_format=FORMAT,
        auth_method=method,
        key=KEY,
    )
    lib = MetricsResponseHandler(built.body.decode(), data_format=FMT, secret_key=KEY)
    assert lib.is_auth_valid()


def test_tampered_data_does_not_verify():
    built = build_request(SN, data={"token_count": 13}, timestamp=TS, data_format=FORMAT, auth_method="da", key=KEY)
    forged = built.body.replace(b"[13]", b"[14]")
    req = parse_body(forged, "json", formats={12: FORMAT}.get, received_at=TS)
    with pytest.raises(MetricsError, match="does not verify"):
        verify_request(req.signed, req.auth, KEY)


def test_zero_padded_and_upper_case_hex_are_accepted():  # openpaygo's "Unpadded hex" (docs/metrics.md)
    # find a serial whose sa hash has a leading zero nibble, so padding changes the text
    sn = next(s for s in (f"SN{i}" for i in range(1000)) if len(hex_of(siphash64(KEY, s))) < 16)
    fields = SignedFields(sn, TS)
    unpadded = request_signature(fields, "sa", KEY)
    padded = request_signature(fields, "sa", KEY, pad=True)
    assert len(padded) == 18 and len(unpadded) < 18
    for auth in (unpadded, padded, padded.upper().replace("SA", "sa")):
        assert verify_request(fields, auth, KEY).method == "sa"


def test_a_zero_padded_ra_chain_is_accepted_and_reported():
    fields = SignedFields(SN, TS, None, D, HD)
    sig = request_signature(fields, "ra", KEY, pad=True)
    if sig == request_signature(fields, "ra", KEY):
        pytest.skip("no intermediate hash with a leading zero for this vector")
    assert verify_request(fields, sig, KEY).variant == "zero-padded chain"


def test_a_device_signing_its_own_json_text_is_accepted():  # openpaygo's "Re-dumped JSON" (docs/metrics.md)
    body = b'{"sn":"A111222","ts":1611583070,"dfo":{"data_order":["v"]},"d":[12.50],"a":"%s"}'
    own = "da" + hex_of(siphash64(KEY, "A1112221611583070[12.50]"))
    req = parse_body(body % own.encode(), "json", received_at=TS)
    result = verify_request(req.signed, req.auth, KEY)
    assert result.variant == "device's own JSON text"
    lib = MetricsResponseHandler((body % own.encode()).decode(), data_format={"data_order": ["v"]}, secret_key=KEY)
    assert not lib.is_auth_valid()  # the reference re-dumps 12.50 as 12.5


@pytest.mark.parametrize("auth", ["xa1234", "da", "da12345678901234567", "dazz", "", "sa-1"])
def test_malformed_auth_strings(auth):
    with pytest.raises(MetricsError) as info:
        verify_request(SignedFields(SN, TS), auth, KEY)
    assert (info.value.status, info.value.code) == (403, "auth_malformed")


def test_timestamp_and_counter_auth_need_their_field():
    for method, fields in (("ta", SignedFields(SN, None, 5)), ("ca", SignedFields(SN, TS, None))):
        with pytest.raises(MetricsError):
            verify_request(fields, method + "1234", KEY)
        with pytest.raises(ValueError):
            request_signature(fields, method, KEY)


@pytest.mark.parametrize(
    "fields, guard",
    [
        ({"a": "ta1", "ts": TS, "rc": 5}, "ts"),  # Timestamp Auth signs ts
        ({"a": "ca1", "ts": TS, "rc": 5}, "rc"),  # Counter Auth signs rc
        ({"a": "ra1", "ts": TS, "rc": 5}, "rc"),  # Data Auth: ts or rc, the counter when there is one
        ({"a": "da1", "ts": TS, "rc": 5}, "rc"),
        ({"a": "sa1", "ts": TS, "rc": 5}, "rc"),
        ({"ts": TS, "rc": 5}, "rc"),
        ({"a": "ra1", "ts": TS}, "ts"),
        ({"ts": TS}, "ts"),
        ({"a": "ta1", "rc": 5}, "rc"),  # no ts to guard with (refused anyway when the device is known)
        ({}, None),
    ],
)
def test_the_replay_guard_is_the_field_the_signature_relies_on(fields, guard):
    """docs/metrics.md "Replay protection": the server's guard per auth method."""
    req = parse_body(json.dumps({"sn": SN, "d": {"x": 1}, **fields}).encode(), "application/json", received_at=TS)
    assert replay_guard(req) == guard


@pytest.mark.parametrize(
    "content",
    [
        {"token_list": [111222333, 444555666]},
        {"active_until_timestamp": 1616081621},
        {"active_seconds_left": 3600},
        {"settings": {"base_url": "https://x.example/metrics"}, "token_list": [333444555]},
        {"extra_data": {"sun_prevision_wsqm": "990"}, "token_list": [111222333]},
        {
            "active_until_timestamp": 1616081621,
            "active_seconds_left": 5,
            "token_list": [1],
            "settings": {"a": 1},
            "extra_data": {"b": 2},
        },
    ],
)
@pytest.mark.parametrize("ts, rc", [(TS, None), (None, 17), (TS, 17)])
def test_our_reply_signature_is_openpaygos(content, ts, rc):
    lib = OpenPAYGOMetricsShared.generate_response_signature_from_data(
        data=content, secret_key=KEY, serial_number=SN, timestamp=ts, request_count=rc
    )
    assert reply_signature(KEY, SN, timestamp=ts, request_count=rc, **content) == lib
    reply = MetricsReply(
        SN,
        tuple(content.get("token_list", ())) or None,
        content.get("active_until_timestamp"),
        content.get("active_seconds_left"),
        content.get("settings"),
        content.get("extra_data"),
    )
    signed = reply.signed(KEY, request_timestamp=ts, request_count=rc)
    assert signed.auth == lib
    assert signed.verify(KEY, request_timestamp=ts, request_count=rc)
    assert not signed.verify(KEY, request_timestamp=(ts or 0) + 1, request_count=rc)


def test_openpaygo_answer_payload_signature_matches_ours():
    request = MetricsRequestHandler(SN, data_format=dict(FMT))
    request.set_timestamp(TS)
    request.set_data({"token_count": 13})
    lib = MetricsResponseHandler(request.get_condensed_request_payload(), data_format=FMT, secret_key=KEY)
    lib.add_tokens_to_answer([111222333])
    lib.add_settings_to_answer({"base_url": "https://x.example/"})
    answer = lib.get_answer_dict()
    assert verify_reply(answer["a"], KEY, SN, timestamp=TS, token_list=answer["tkl"], settings=answer["st"])
    assert "sn" not in answer  # the reference omits it; our replies always carry it


def test_method_names_match_openpaygo():
    assert {
        AuthMethod.SIMPLE_AUTH,
        AuthMethod.TIMESTAMP_AUTH,
        AuthMethod.COUNTER_AUTH,
        AuthMethod.DATA_AUTH,
        AuthMethod.RECURSIVE_DATA_AUTH,
    } == {"sa", "ta", "ca", "da", "ra"}
