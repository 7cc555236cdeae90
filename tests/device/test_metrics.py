"""OpenPAYGO Metrics as the device reports it (docs/protocol.md "Metrics sessions", docs/metrics.md):
the DUT, in a token state the bench knows (factory-fresh, or as its ledger holds it), reports to the bench's
Metrics server through a fault-injecting proxy (`metrics_dut`, fixtures/metrics_device.py), by
itself over HTTP (direct mode) or relayed over its UART by the bench (bridge mode). What is judged
is what reached the server, read by the bench's own codec, and what the bench's token model
predicts; the device's own account (`METRICS STATUS`) is never taken for the truth.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bench.equipment.fault_proxy import ProxiedExchange, ProxyMode
from bench.fixtures.dut import skip_not_covered
from bench.openpaygo.metrics.errors import MetricsError
from bench.openpaygo.metrics.keys import REQUEST_LONG_TO_SHORT
from bench.openpaygo.metrics.wire import decode, encode, encoding_of
from bench.server.store import StoredRequest

needs_metrics = pytest.mark.needs("metrics_report")

SHORT_KEYS = frozenset(REQUEST_LONG_TO_SHORT.values())  # sn d hd ts rc dct a df dfo acc
SERVER_FAULTS = (ProxyMode.REFUSE, ProxyMode.HTTP_ERROR, ProxyMode.STALL, ProxyMode.DROP_BEFORE, ProxyMode.DROP_AFTER)
MONTH_S = 30 * 86400  # the data budget's month
BUDGET_SESSIONS = 3
TOKEN_DAYS = 3
ROW_MARGIN_S = 0.1  # a session's way from the DUT to the proxy, at most (see _faulted_with_rows)
# test_metrics_rows_survive_server_faults needs at least this many row times at the server: one
# stored before the first fault, one sampled while the faults were on (every faulted session
# carries it until one is answered), one sampled after the last: then every row a fault could lose
# or send twice lies between rows the server holds, where a gap or a duplicate shows. Fewer (say
# a single row over the whole test, a DUT sampling every minute): not covered.
ROWS_AROUND_FAULTS = 3
# The rows test waits a sample interval for each of those rows (and some sessions): a DUT that
# samples more seldom than this (it refused the bench's sample=) would take minutes per run.
ROWS_MAX_SAMPLE_S = 5


def session_timeout(m, sessions: int) -> float:
    """Long enough for `sessions` sessions, a failed one's reply timeout and some slack."""
    return sessions * m.period_s + m.reply_timeout_s + 3.0


def wait_rows(m, sessions: int) -> list[StoredRequest]:
    """Wait until `sessions` requests were stored during the test, one of them at least carrying
    rows (its `hd`); returns them all. A signature or a session that carries no row proves little
    (one signed over the wrong rows verifies without rows), and at a sub-second period the
    factory-fresh DUT's first sessions carry none: its first row comes a sample interval after
    its boot."""

    def stored() -> list[StoredRequest] | None:
        found = m.requests()
        return found if len(found) >= sessions and any(wire_object(s).get("hd") for s in found) else None

    return m.wait_until(
        stored, session_timeout(m, sessions) + m.sample_s, f"{sessions} Metrics session(s), one with rows"
    )


def label(stored: StoredRequest, wire: dict | None = None) -> str:
    """How a failure names a stored request: its rc (as sent) and the server's row id."""
    rc = wire.get("rc", wire.get("request_count", "?")) if isinstance(wire, dict) else "?"
    return f"request rc={rc} (server row {stored.id}, {stored.received_at})"


def wire_object(stored: StoredRequest) -> dict:
    """The request body as sent, decoded (JSON or CBOR by its Content-Type). The server keeps only
    the start of a refused body (docs/server.md "Storage"): such a request fails naming why it
    was refused, not as a body that does not decode."""
    if stored.body_is_excerpt:
        raise AssertionError(
            f"server row {stored.id}: refused ({stored.error_code} at {stored.error_where}: "
            f"{stored.error_message}); only the first {len(stored.body)} of its {stored.body_length} bytes were kept"
        )
    try:
        value = decode(stored.body, encoding_of(stored.content_type))
    except MetricsError as e:
        raise AssertionError(
            f"server row {stored.id}: the body does not decode as {stored.content_type}: {e.where}: {e.message}"
        ) from None
    assert isinstance(value, dict), f"server row {stored.id}: the body is a {type(value).__name__}, not an object"
    return value


def row_times(m, stored: StoredRequest) -> list[int]:
    req = m.parse(stored)
    return [int(row["timestamp"]) for row in req.historical_data or ()]


def rc_ts(stored: StoredRequest) -> tuple[Any, Any]:
    wire = wire_object(stored)
    return wire.get("rc"), wire.get("ts")


@pytest.mark.catches("serial_truncated", "metrics_wrong_short_key", "metrics_unsigned", "metrics_mis_signed")
@needs_metrics
def test_metrics_payload_conforms(metrics_dut, rig):
    """Every request the DUT stored at the server is a well-formed condensed OpenPAYGO Metrics
    request: it parses with the bench's codec against the data format the DUT registered
    (`METRICS FORMAT`), its top-level keys are all the spec's short keys (an unknown one fails,
    named), it names that format by id, the values have the types the format declares, the rows
    are in time order at whole multiples of the sample interval the DUT runs at (the format's
    interval unless the bench shortened it, `metrics_dut`; within a request and from one request
    to the next) and not after the request's `ts`, and `d` carries `token_count` equal to the model's count and the DUT's `STATUS` count.
    Rows carry on from the last request whose reply the DUT took (its `metrics_done`): a request
    it gave up on (no reply within its wait, say a bridge round trip slower than its period) may
    have its rows sent again, and that is not held against it.
    Method: sessions on a server that answers every request, until a request carrying rows
    follows an answered one that carried rows (at a sub-second period a session may carry none)."""
    m = metrics_dut

    def answered_then_rows() -> list[StoredRequest] | None:
        stored = m.requests()
        answered = m.answered()
        with_rows = [wire_object(s) for s in stored]
        with_rows = [w for w in with_rows if w.get("hd")]
        return stored if any(w.get("rc") in answered for w in with_rows[:-1]) else None

    m.wait_until(
        answered_then_rows,
        session_timeout(m, 3) + m.sample_s,
        "an answered Metrics session carrying rows, then another carrying rows",
    )
    answered = m.answered()
    status = m.dut.status()
    model_count = m.session.model.last_count
    fmt = m.data_format
    interval = m.sample_s
    assert fmt.historical_data_interval == m.device_format.interval, (
        f"the DUT's METRICS FORMAT says interval={m.device_format.interval} but its Data Format object "
        f"has historical_data_interval {fmt.historical_data_interval!r}"
    )
    assert status.token_count == model_count, (
        f"the DUT's STATUS count is {status.token_count}, the model's {model_count} (no token was entered)"
    )
    last_row: tuple[int, str] | None = None
    for stored in m.requests():
        wire = wire_object(stored)
        where = label(stored, wire)
        unknown = sorted(set(wire) - SHORT_KEYS)
        assert not unknown, (
            f"{where}: top-level key(s) {', '.join(map(repr, unknown))} are not Metrics v1.0 short keys "
            f"({' '.join(sorted(SHORT_KEYS))})"
        )
        try:
            req = m.parse(stored)
        except MetricsError as e:
            raise AssertionError(f"{where}: the bench's codec refuses it at {e.where}: {e.message}") from None
        assert req.data_format_id == m.data_format_id and not req.embedded_format, (
            f"{where}: names data format {req.data_format_id!r} (embedded: {req.embedded_format}), not the "
            f"registered {m.data_format_id}"
        )
        for name in list(req.data or {}) + [k for row in req.historical_data or () for k in row]:
            assert name == "timestamp" or name in fmt.variables, (
                f"{where}: variable {name!r} is not declared in the registered data format"
            )
        assert req.token_count == model_count, (
            f"{where}: d carries token_count {req.token_count!r}; the model's count is {model_count} and the "
            f"DUT's STATUS says {status.token_count}"
        )
        times = [int(row["timestamp"]) for row in req.historical_data or ()]
        for earlier, later in zip(times, times[1:]):
            step = later - earlier
            assert step > 0 and step % interval == 0, (
                f"{where}: row at {later} follows the row at {earlier}: rows must go forward in whole "
                f"multiples of the sample interval ({interval} s)"
            )
        assert not times or req.timestamp is None or times[-1] <= req.timestamp, (
            f"{where}: its newest row ({times[-1]}) is after the request's ts ({req.timestamp})"
        )
        if times and last_row is not None:  # the rows carry on from the last answered request's
            prev_t, prev_where = last_row
            assert times[0] > prev_t and (times[0] - prev_t) % interval == 0, (
                f"{where}: its first row ({times[0]}) does not follow the last row of {prev_where} ({prev_t}), "
                f"whose reply the DUT took, at a whole multiple of the interval ({interval} s)"
            )
        if times and req.request_count in answered:
            last_row = (times[-1], where)
        assert stored.verdict == "accepted", (
            f"{where}: the server refused it: {stored.error_code} at {stored.error_where}: {stored.error_message}"
        )


@pytest.mark.catches("serial_truncated", "metrics_wrong_short_key", "metrics_unsigned", "metrics_mis_signed")
@needs_metrics
def test_metrics_auth_verifies(metrics_dut, rig):
    """Every request carries a payload signature `a` with the rig's method (`dut.metrics_auth`)
    that the server verified the way openpaygo's reference does (the stored verdict and method;
    a signature the server accepts only through one of its tolerances fails, named).
    Method: two sessions or more, one carrying rows at least (`wait_rows`), on a server that
    requires payload auth."""
    m = metrics_dut
    wait_rows(m, 2)
    method = rig.dut.metrics_auth
    for stored in m.requests():
        wire = wire_object(stored)
        where = label(stored, wire)
        a = wire.get("a")
        assert isinstance(a, str) and a, f"{where}: carries no payload signature a (the rig's method is {method})"
        assert a[:2] == method, f"{where}: signed {a[:2]!r}, the rig configured the DUT for {method!r}"
        auth_error = (stored.error_code or "").startswith("auth_")
        assert stored.verdict == "accepted", (
            f"{where}: "
            + (
                "the server did not verify its signature"
                if auth_error
                else "the server refused it, so its signature was not accepted"
            )
            + f": {stored.error_code} at {stored.error_where}: {stored.error_message}"
        )
        verified = (stored.auth or "").split("+")[0]
        assert verified == method, (
            f"{where}: the server verified it as {verified!r}; expected {method!r} as openpaygo computes it "
            "(a tolerance was needed: the reference would refuse it)"
        )


@pytest.mark.catches(
    "provisioning_not_persisted",
    "backfeed_from_uart",
    "rtc_lost_on_power_loss",
    "metrics_counter_not_persisted",
    "metrics_wrong_short_key",
)
@needs_metrics
def test_metrics_counter_and_time_increase_across_power_cycles(metrics_dut, power_cycle):
    """The request counter `rc` strictly increases from each request to the next, across a power
    cycle too: rc is incremented and stored in NVM before a request leaves (on request, not on
    response), and a restarted device must not reuse a counter the server has seen (it would take
    the request for a replay). The timestamp `ts` never goes back (the RTC keeps time through a
    power cycle), and under timestamp auth (`dut.metrics_auth = "ta"`) it strictly increases too:
    there it is what guards against replays (docs/metrics.md "Replay protection"). Every request
    must carry rc, so under any other auth rc is the guard and two requests may share a second.
    Method: where the DUT's clock can be set, it is set a day ahead first (`clock_ahead`: a clock
    that restarts at power loss then goes back a day, however long the rig ran before); two
    sessions, a power cycle (the Metrics settings sent again: the build's period is back), one more
    session; every stored request's rc and ts, in the order the server stored them."""
    m = metrics_dut
    if m.session.clock_ahead():  # a clock that restarts at power loss: a day's jump back of ts
        m.wait_sessions(1, session_timeout(m, 1))  # one request stamped after the jump
    m.wait_sessions(2, session_timeout(m, 2))
    cycled_after = max(r.id for r in m.requests())
    power_cycle()
    m.configure()
    m.wait_sessions(1, session_timeout(m, 1))
    previous: tuple[Any, Any, StoredRequest] | None = None
    for stored in m.requests():
        rc, ts = rc_ts(stored)
        where = label(stored, {"rc": rc})
        assert isinstance(rc, int) and not isinstance(rc, bool), f"{where}: rc is {rc!r}, not a whole number"
        assert isinstance(ts, (int, float)) and not isinstance(ts, bool), f"{where}: ts is {ts!r}, not a number"
        if previous is not None:
            prc, pts, pstored = previous
            across = " across the power cycle" if pstored.id <= cycled_after < stored.id else ""
            assert rc > prc, f"{where}: rc {rc} follows rc {prc}{across}: the request counter must go up"
            assert ts >= pts, f"{where}: ts {ts} follows ts {pts} (rc {prc}){across}: the timestamp went back"
            if m.auth == "ta":
                assert ts > pts, (
                    f"{where}: ts {ts} follows ts {pts} (rc {prc}){across}: under timestamp auth (ta) the "
                    "timestamp must go up (the server takes an equal one for a replay)"
                )
        previous = (rc, ts, stored)


def _exchange_after(m, start: int, want) -> ProxiedExchange | None:
    return next((e for e in m.device_exchanges()[start:] if want(e)), None)


def _faulted_with_rows(m, start: int, mode: ProxyMode, interval: int) -> ProxiedExchange | None:
    """The first exchange after `start` that met `mode` and surely carried a row: the DUT samples a
    row every interval, and every session since the last one the proxy passed (or since the DUT
    was configured) met the fault, so a session started an interval after that one carries at
    least the row sampled in between (ROW_MARGIN_S: sessions are timed by the proxy, a little
    after the DUT started them). Sessions at a sub-second period mostly carry no row: one that
    carries none can lose none, and would prove nothing."""
    exchanges = m.device_exchanges()
    faulted = [e for e in exchanges[start:] if e.mode is mode]
    if not faulted:
        return None
    first = faulted[0].started_at
    last_pass = max((e.started_at for e in exchanges if e.mode is ProxyMode.PASS and e.started_at < first), default=0.0)
    due = max(last_pass, m.configured_at) + interval + ROW_MARGIN_S
    return next((e for e in faulted if e.started_at >= due), None)


@pytest.mark.catches(
    "serial_truncated",
    "metrics_wrong_short_key",
    "metrics_unsigned",
    "metrics_mis_signed",
    "metrics_data_dropped_before_reply",
    "metrics_rows_duplicated_on_retry",
)
@needs_metrics
def test_metrics_rows_survive_server_faults(metrics_dut, rig, request):
    """No row is lost and none is delivered twice when the server or the network fails
    (Metrics v1.0 asynchronous flow: rows are cleared only once a reply arrives). For each of a
    connection reset (`refuse`), an HTTP 503, a server that answers after the DUT's reply timeout
    (`stall`), a connection dropped before the server got the request and one dropped after the
    server stored it (`drop_after`), one after another: each stays on until a session carrying
    rows met it (`_faulted_with_rows`: the rows pending since the last session the proxy let
    through, which every later session carries until one is answered), then the next; then the
    server is back for two delivered sessions, and until a request after the faults carried rows
    (else rows lost at the end would lie outside the span checked). The rows of five failed sessions in a row must all
    arrive. Afterwards every row time from the first stored row to the last is at the server (no
    gap at the sample interval over all accepted requests; a clock running fast within the drift
    limit may skip one second, so single missing rows up to the drift's share are tolerated), and
    no row time is in two requests whose reply was delivered (`drop_after` legitimately makes the
    DUT send its rows again: the server stored them but the DUT never had the reply).
    Rows come at the sample interval the bench set (`metrics_dut`: a row a second, where a build
    samples every minute or more); the faults start once a request carrying rows was stored.
    Not covered (never passed) with fewer than ROWS_AROUND_FAULTS row times at the server, or
    where the DUT samples more seldom than ROWS_MAX_SAMPLE_S: with too few rows a lost or
    repeated one need not show."""
    m = metrics_dut
    interval = m.sample_s
    if interval > ROWS_MAX_SAMPLE_S:
        skip_not_covered(
            request,
            f"the DUT samples a row every {interval} s (its build: {m.build_sample_s} s; it did not take "
            f"sample=1): {ROWS_AROUND_FAULTS} rows around the server faults would take minutes",
        )
    wait_rows(m, 1)  # a row at the server before the first fault
    for mode in SERVER_FAULTS:
        start = len(m.device_exchanges())
        m.proxy.set_mode(mode)  # until a session carrying a row met it
        try:
            faulted = m.wait_until(
                lambda: _faulted_with_rows(m, start, mode, interval),
                session_timeout(m, 2) + interval,
                f"a Metrics session carrying a row meeting the server fault {mode.value}",
            )
        finally:
            m.proxy.set_mode(ProxyMode.PASS)
    index = m.device_exchanges().index(faulted)
    stored_before = {r.id for r in m.all_requests()}

    def recovered() -> bool:
        """Two delivered sessions after the faults (the recovery, and one more: a retry must not
        leave rows to send again), and a request after them at the server that carries rows: its
        rows were sampled after the faulted ones, so the span of row times checked below reaches
        past every row a fault could have lost (sessions at a sub-second period mostly carry none)."""
        delivered = sum(e.mode is ProxyMode.PASS and e.delivered for e in m.device_exchanges()[index + 1 :])
        after = [r for r in m.requests() if r.id not in stored_before and r.verdict == "accepted"]
        return delivered >= 2 and any(row_times(m, r) for r in after)

    m.wait_until(
        recovered,
        session_timeout(m, 3) + interval,
        f"two delivered sessions after the server faults {', '.join(f.value for f in SERVER_FAULTS)}, "
        "one carrying rows",
    )

    stored = m.all_requests()
    forwarded = [e for e in m.device_exchanges() if e.forwarded]
    assert len(forwarded) == len(stored), (
        f"the proxy forwarded {len(forwarded)} device-data requests but the server stored {len(stored)}"
    )
    at_server: dict[int, list[str]] = defaultdict(list)
    delivered_rows: dict[int, list[str]] = defaultdict(list)
    for s, ex in m.exchanged():
        if s.verdict != "accepted":
            continue
        name = label(s, wire_object(s)) + f" ({ex.mode.value}{', reply delivered' if ex.delivered else ', reply lost'})"
        for t in row_times(m, s):
            at_server[t].append(name)
            if ex.delivered:
                delivered_rows[t].append(name)
    assert at_server, f"no rows reached the server; {m.recent()}"
    first, last = min(at_server), max(at_server)
    missing = [t for t in range(first, last + 1, interval) if t not in at_server]
    runs = _runs(missing, interval)
    drift_skips = math.ceil((last - first) * rig.dut.rtc_drift_limit_ppm / 1e6)
    lost = [r for r in runs if len(r) > 1]
    assert not lost and len(runs) <= drift_skips, (
        f"rows missing at the server between {first} and {last} (sample interval {interval} s): "
        + ", ".join(f"{r[0]}..{r[-1]} ({len(r)} rows)" for r in runs)
        + f"; at most {drift_skips} single skipped second(s) are explained by RTC drift "
        f"(±{rig.dut.rtc_drift_limit_ppm:g} ppm over {last - first} s); {m.recent()}"
    )
    twice = {t: names for t, names in delivered_rows.items() if len(names) > 1}
    assert not twice, "rows delivered in more than one answered request: " + "; ".join(
        f"{t} in {' and '.join(names)}" for t, names in sorted(twice.items())[:5]
    )
    if len(at_server) < ROWS_AROUND_FAULTS:
        skip_not_covered(
            request,
            f"only {len(at_server)} row time(s) reached the server across {len(stored)} requests and "
            f"{len(SERVER_FAULTS)} server faults (at least {ROWS_AROUND_FAULTS} needed for a lost or repeated "
            f"row to show; the DUT samples every {interval} s)",
        )


def _runs(times: list[int], step: int) -> list[list[int]]:
    """Consecutive runs of missing row times."""
    out: list[list[int]] = []
    for t in times:
        if out and t - out[-1][-1] == step:
            out[-1].append(t)
        else:
            out.append([t])
    return out


def _reply_tokens(stored: StoredRequest) -> list:
    if stored.verdict != "accepted" or not stored.reply:
        return []
    reply = decode(stored.reply, encoding_of(stored.reply_content_type))
    tokens = reply.get("tkl", reply.get("token_list", [])) if isinstance(reply, dict) else []
    return tokens if isinstance(tokens, list) else []


@pytest.mark.catches(
    "serial_truncated",
    "metrics_wrong_short_key",
    "metrics_unsigned",
    "metrics_mis_signed",
    "metrics_tokens_not_applied",
)
@needs_metrics
def test_metrics_tokens_applied(metrics_dut, rig):
    """Tokens in a Metrics reply (`tkl`) are entered as if typed: once the server is told to
    bring the DUT to TOKEN_DAYS days of credit (registry `set_target`), its reply carries the
    token(s) that do it, and after the next session the DUT's STATUS (count, PAYG state, credit)
    is what the bench's model predicts for exactly those tokens entered when the reply came.
    Method: sessions until one carried rows (`wait_rows`), the target set, sessions until a reply
    with tokens was delivered and one more."""
    m = metrics_dut
    session = m.session
    wait_rows(m, 1)
    serial = rig.dut.serial_number
    m.server.registry.set_target(serial, datetime.now(UTC) + timedelta(days=TOKEN_DAYS))

    def with_tokens() -> StoredRequest | None:
        return next((s for s, e in m.exchanged() if e.delivered and _reply_tokens(s)), None)

    carried = m.wait_until(with_tokens, session_timeout(m, 2), "a delivered Metrics reply carrying tokens")
    entered_at = session.now()
    issued = m.server.registry.state(serial).last_tokens
    sent = [str(t).zfill(9) if isinstance(t, int) else str(t) for t in _reply_tokens(carried)]
    assert sent == [t.code for t in issued], (
        f"the reply to {label(carried, wire_object(carried))} carried {sent}, the server issued "
        f"{[t.code for t in issued]}"
    )
    for token in issued:
        predicted = session.entered_by_dut(token.code, entered_at, "from a Metrics reply")
        assert predicted.accepted, (
            f"the model refuses the server's token {token.code} (count {token.count}): {predicted.outcome}"
        )
    m.wait_sessions(1, session_timeout(m, 1))
    session.check_status()


# (short key, long key, MetricsStatus field, MetricsRequest property saying the DUT asked for it)
REPLY_FIELDS = (
    ("auts", "active_until_timestamp", "active_until", "wants_active_until"),
    ("asl", "active_seconds_left", "seconds_left", "wants_seconds_left"),
)
CLOCK_SLACK_S = 5  # the device's clock against the host's, and a session in between


def _delivered_replies(m) -> list[tuple[StoredRequest, dict]]:
    """(request, decoded reply) for every accepted request whose reply reached the DUT."""
    out = []
    for s, ex in m.exchanged():
        if ex.delivered and s.verdict == "accepted" and s.reply:
            reply = decode(s.reply, encoding_of(s.reply_content_type))
            out.append((s, reply if isinstance(reply, dict) else {}))
    return out


@pytest.mark.catches(
    "serial_truncated",
    "metrics_wrong_short_key",
    "metrics_unsigned",
    "metrics_mis_signed",
    "metrics_auts_ignored",
    "metrics_tokens_not_applied",
)
@needs_metrics
def test_metrics_active_until_honoured(metrics_dut, rig, request):
    """A DUT that asks for `auts` / `asl` (`autsr` / `aslr` in its data) holds what the server
    last answered (`METRICS STATUS`), and that agrees with the credit the DUT runs on: once the
    server brought it to TOKEN_DAYS days of credit, the DUT's own end of credit (host time +
    its seconds left) is the server's `auts`, not before it (it would lock early) and less than
    one token step (a day / time divider) after it (the server rounds a remainder up).
    Method: as test_metrics_tokens_applied, then one more session; the replies as stored.
    Not covered when the DUT asks for neither."""
    m = metrics_dut
    first = wait_rows(m, 1)
    asked = [(short, name, attr) for short, name, attr, wants in REPLY_FIELDS if getattr(m.parse(first[0]), wants)]
    if not asked:
        skip_not_covered(request, "the DUT asks for neither auts nor asl (no autsr / aslr in its Metrics data)")
    serial = rig.dut.serial_number
    m.server.registry.set_target(serial, datetime.now(UTC) + timedelta(days=TOKEN_DAYS))
    m.wait_until(
        lambda: any(_reply_tokens(s) for s, _ in _delivered_replies(m)),
        session_timeout(m, 2),
        "a delivered Metrics reply carrying tokens",
    )
    m.wait_sessions(1, session_timeout(m, 1))
    status = m.dut.metrics_status()
    credit = m.dut.status()
    host_now = datetime.now(UTC).timestamp()
    replies = _delivered_replies(m)
    for short, name, attr in asked:
        answered = [(s, r.get(short, r.get(name))) for s, r in replies if r.get(short, r.get(name)) is not None]
        assert answered, f"the DUT asked for {short} but no delivered reply carried it; {m.recent()}"
        recent = [v for _, v in answered[-2:]]  # a session may have ended since the status was read
        held = getattr(status, attr)
        assert held in recent, (
            f"METRICS STATUS holds {short}={held!r}; the server's last delivered replies said {recent} "
            f"({label(answered[-1][0], wire_object(answered[-1][0]))})"
        )
    auts = next(
        (
            r.get("auts", r.get("active_until_timestamp"))
            for _, r in reversed(replies)
            if r.get("auts", r.get("active_until_timestamp")) is not None
        ),
        None,
    )
    if auts is None:  # asl only: the server's target is now + asl
        auts = host_now + next(r.get("asl", r.get("active_seconds_left")) for _, r in reversed(replies))
    device_until = host_now + credit.seconds_left
    step = 86400 / rig.dut.time_divider
    assert auts - CLOCK_SLACK_S <= device_until < auts + step + CLOCK_SLACK_S, (
        f"the DUT's credit ends at {device_until:.0f} (host time + {credit.seconds_left} s left), the server's "
        f"auts is {auts}: the DUT {'locks before' if device_until < auts else 'runs past'} the time the server "
        f"sold (allowed: up to one token step, {step:g} s, after it)"
    )


@pytest.mark.catches(
    "provisioning_not_persisted",
    "serial_truncated",
    "backfeed_from_uart",
    "metrics_wrong_short_key",
    "metrics_unsigned",
    "metrics_mis_signed",
    "metrics_base_url_not_followed",
)
@needs_metrics
def test_metrics_follows_base_url(metrics_dut, power_cycle):
    """A reply's `st.base_url` moves the device (Metrics v1.0 Response object, a server
    migration): once the server announces a new base URL, the next sessions arrive there and
    none at the old one any more, and the device keeps the new URL through a power cycle (it is
    in NVM, like the one the bench configured).
    Method: sessions through the bench's proxy until one carried rows (`wait_rows`); the server
    then announces a second proxy in front of it (a new host:port); the first delivered session
    there, two more, none meanwhile at the old one; `METRICS CONFIG` names the new URL before and
    after a power cycle. In bridge mode the bench relays where the device says it now reports
    (`metrics_settings`)."""
    m = metrics_dut
    wait_rows(m, 1)
    assert m.new_proxy is not None
    with m.new_proxy() as moved:
        m.server.announce_base_url(moved.base_url)

        def delivered_there() -> list[ProxiedExchange]:
            return [e for e in moved.exchanges() if e.path.rstrip("/").endswith("/dd") and e.delivered]

        m.wait_until(
            delivered_there,
            session_timeout(m, 2),
            f"a Metrics session at the announced base URL {moved.base_url} (old: {m.proxy.base_url})",
        )
        at_old = len(m.device_exchanges())
        m.wait_until(
            lambda: len(delivered_there()) >= 3,
            session_timeout(m, 2),
            f"two more sessions at the announced base URL {moved.base_url}",
        )
        late = m.device_exchanges()[at_old:]
        assert not late, (
            f"{len(late)} session(s) still reached the old base URL {m.proxy.base_url} after the "
            f"device had moved to {moved.base_url}; {m.recent()}"
        )
        url = m.dut.metrics_config().url
        assert url == moved.base_url, f"METRICS CONFIG names {url!r}, not the announced {moved.base_url!r}"
        power_cycle()
        url = m.dut.metrics_config().url
        assert url == moved.base_url, (
            f"after a power cycle METRICS CONFIG names {url!r}, not the announced "
            f"{moved.base_url!r}: the followed URL was not kept in NVM"
        )


def _session_sizes(m, after_id: int) -> list[tuple[int, int]]:
    """(rows, bytes on the wire) of each answered session stored after server row `after_id`:
    accepted, its reply delivered with 200/201."""
    return [
        (len(row_times(m, s)), e.request_bytes + e.response_bytes)
        for s, e in m.exchanged()
        if s.id > after_id and s.verdict == "accepted" and e.delivered and e.status in (200, 201)
    ]


def _row_time_bytes(m, after_id: int) -> float:
    """The mean bytes a row's own `timestamp` takes in the requests stored after `after_id`, as
    encoded (the row against the same row with its time left out: trailing nulls dropped, else a
    null); 0 if no row carried one."""
    order = list(m.data_format.historical_data_order)
    if "timestamp" not in order:
        return 0.0
    pos = order.index("timestamp")
    costs = []
    for s in m.requests():
        if s.id <= after_id:
            continue
        enc = encoding_of(s.content_type)
        for row in wire_object(s).get("hd") or ():
            if isinstance(row, list) and len(row) > pos and row[pos] is not None:
                bare = [None if i == pos else v for i, v in enumerate(row)]
                while bare and bare[-1] is None:
                    bare.pop()
                costs.append(len(encode(row, enc)) - len(encode(bare, enc)))
    return sum(costs) / len(costs) if costs else 0.0


def _fit(sizes: list[tuple[int, int]]) -> tuple[float, float]:
    """Least squares bytes = overhead + rows * per_row over sessions of two row counts at least."""
    n = len(sizes)
    mean_k = sum(k for k, _ in sizes) / n
    mean_b = sum(b for _, b in sizes) / n
    var = sum((k - mean_k) ** 2 for k, _ in sizes)
    per_row = sum((k - mean_k) * (b - mean_b) for k, b in sizes) / var
    return mean_b - per_row * mean_k, per_row


@pytest.mark.catches("serial_truncated", "metrics_wrong_short_key", "metrics_unsigned", "metrics_mis_signed")
@needs_metrics
def test_metrics_data_budget(metrics_dut, rig, measure, request):
    """The month's bytes on the wire (HTTP request and response, headers included, as the proxy
    counted them; TCP/IP and TLS not counted) at the product's real session, within the month's
    budget (`dut.metrics_budget_bytes_per_month`; the spec's example is under 750 KB a month,
    docs/metrics.md "Transport and size"). A product session every `dut.metrics_period_s` carries
    the rows of that period at the build's sample interval (`build_sample_s`, what the DUT said
    before the bench shortened it): rows_per_session = metrics_period_s / build_sample_s, so a
    month costs (30 x 86400 / metrics_period_s) x (overhead + rows_per_session x bytes_per_row).
    Method (an extrapolation, not a session of the real size, which would take the real period):
    the test's sessions, at the bench's short period and sample interval, carry different numbers
    of rows; a least-squares line through (rows, bytes) of BUDGET_SESSIONS answered sessions or
    more, of two row counts at least, gives the bytes a session costs without rows (headers, `d`,
    the signature, the reply) and the bytes a row adds. Where the bench shortened the sample
    interval, each row carries its own timestamp (the format's interval is the build's), which in
    a real session only the first row does: a row is then counted without the bytes its time
    takes in the requests as encoded (`metrics_row_time_bytes`), the session with one. The `hd`
    key's few bytes are counted with the rows: the estimate errs high, never low.
    The sessions counted start once one carried rows (`wait_rows`): a DUT whose rows are refused
    keeps them, and no later session is answered. Not covered when the sessions never carry two
    different row counts (no line to draw).
    Measurements: metrics_overhead_bytes_per_session, metrics_bytes_per_row, metrics_row_time_bytes,
    metrics_rows_per_session, metrics_bytes_per_session, metrics_sessions_per_month, metrics_bytes_per_month."""
    m = metrics_dut
    after_id = max(r.id for r in wait_rows(m, 1))
    m.wait_until(
        lambda: len(_session_sizes(m, after_id)) >= BUDGET_SESSIONS,
        session_timeout(m, BUDGET_SESSIONS),
        f"{BUDGET_SESSIONS} answered sessions",
    )
    try:
        sizes = m.wait_until(
            lambda: (found := _session_sizes(m, after_id)) and len({k for k, _ in found}) >= 2 and found,
            session_timeout(m, BUDGET_SESSIONS) + 2 * m.sample_s,
            "answered sessions carrying two different numbers of rows",
        )
    except AssertionError as e:
        skip_not_covered(request, f"no bytes per row to measure: {e}")
    overhead, per_row = _fit(sizes)
    assert all(b > 0 for _, b in sizes), f"the proxy counted no bytes for an answered session: {sizes}"
    rows_per_session = rig.dut.metrics_period_s / m.build_sample_s
    time_bytes = _row_time_bytes(m, after_id) if m.sample_s != m.device_format.interval else 0.0
    per_session = overhead + time_bytes + rows_per_session * (per_row - time_bytes)
    per_month = MONTH_S / rig.dut.metrics_period_s
    measure("metrics_overhead_bytes_per_session", round(overhead, 1), "B")
    measure("metrics_bytes_per_row", round(per_row, 1), "B")
    measure("metrics_row_time_bytes", round(time_bytes, 1), "B")
    measure("metrics_rows_per_session", round(rows_per_session, 1), "")
    measure("metrics_bytes_per_session", round(per_session, 1), "B")
    measure("metrics_sessions_per_month", round(per_month, 1), "")
    measure("metrics_bytes_per_month", round(per_session * per_month), "B", high=rig.dut.metrics_budget_bytes_per_month)
