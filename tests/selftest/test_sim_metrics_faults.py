"""The simulator's Metrics defects (fault flags, bench/sim/faults.py) against the real Metrics
server over real HTTP: each flag shows its effect, and the same scenario without it is fine.

The device runs on a tick clock the test moves (helpers from test_sim_metrics_session); server
faults come from its real TCP proxy. Each scenario runs twice, with and without the flag, each
time on a server of its own (one device, one serial: a second device would be a replay).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bench.openpaygo.metrics.codec import parse_body
from bench.openpaygo.metrics.errors import MetricsError
from bench.server.config import MetricsServerConfig
from tests.selftest.test_sim_metrics_session import SAMPLE, T0, FaultProxy, Sim, accepted, register, row_times


@pytest.fixture
def dut(start_metrics_server):
    probe = start_metrics_server()
    return probe.registry.get(probe.registry.serials()[0])


@pytest.fixture
def rig_for(tmp_path, start_metrics_server, dut):
    """rig_for(faults, auth=, server_config=, proxy=, **firmware config) -> (sim, server, proxy):
    a fresh server (and proxy in front of it when asked), a device provisioned to report to it."""
    proxies: list[FaultProxy] = []

    def make(
        faults: tuple[str, ...] = (),
        auth: str = "ra",
        server_config: MetricsServerConfig | None = None,
        proxy: bool = False,
        **config,
    ):
        server = start_metrics_server(server_config)
        home = tmp_path / f"dev{len(proxies)}-{'-'.join(faults) or 'good'}"
        home.mkdir()
        sim = Sim(home, dut, faults=frozenset(faults), **config)
        p = None
        if proxy:
            p = FaultProxy(server.url)
            proxies.append(p)
        else:
            proxies.append(None)  # type: ignore[arg-type]
        sim.provision(p.url if p else server.url, auth=auth, df=register(server, sim.format_json()))
        return sim, server, p

    yield make
    for p in proxies:
        if p is not None:
            p.close()


def last_device_data(server):
    return [r for r in server.requests() if r.kind == "device_data"][-1]


# -- 1. metrics_wrong_short_key ----------------------------------------------------------------


def test_wrong_short_key_sends_rqc_and_the_server_refuses_it(rig_for):
    sim, server, _ = rig_for(("metrics_wrong_short_key",))
    sim.advance(2 * SAMPLE)
    end = sim.session()
    assert (end["event"], end["reason"], end["kept"]) == ("metrics_failed", "http_422", "2")
    stored = last_device_data(server)
    body = json.loads(stored.body)
    assert body["rqc"] == 1 and "rc" not in body
    assert (stored.status, stored.verdict, stored.error_code, stored.error_where) == (
        422,
        "rejected",
        "unknown_field",
        "rqc",
    )
    with pytest.raises(MetricsError) as caught:  # the bench's codec names it the same way
        parse_body(stored.body, stored.content_type, received_at=T0)
    assert (caught.value.code, caught.value.where) == ("unknown_field", "rqc")

    good, good_server, _ = rig_for()
    good.advance(2 * SAMPLE)
    assert good.session()["event"] == "metrics_done"
    body = json.loads(last_device_data(good_server).body)
    assert body["rc"] == 1 and "rqc" not in body


# -- 2. metrics_unsigned -----------------------------------------------------------------------


def test_unsigned_build_is_refused_by_a_payload_auth_server(rig_for):
    sim, server, _ = rig_for(("metrics_unsigned",))  # provisioned auth=ra: the build ignores it
    assert sim.ok("METRICS CONFIG")["auth"] == "ra"
    sim.advance(2 * SAMPLE)
    end = sim.session()
    assert (end["event"], end["reason"], end["kept"]) == ("metrics_failed", "http_403", "2")
    stored = last_device_data(server)
    assert "a" not in json.loads(stored.body)
    assert (stored.status, stored.verdict, stored.error_code) == (403, "rejected", "auth_missing")

    # a server that asks for no auth stores it, as unauthenticated
    open_sim, open_server, _ = rig_for(("metrics_unsigned",), server_config=MetricsServerConfig(auth="none"))
    open_sim.advance(SAMPLE)
    assert open_sim.session()["event"] == "metrics_done"
    assert accepted(open_server)[-1].auth == "none"

    good, good_server, _ = rig_for()
    good.advance(2 * SAMPLE)
    assert good.session()["event"] == "metrics_done"
    assert accepted(good_server)[-1].auth == "ra"


# -- 3. metrics_mis_signed ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ra", "da"])
def test_mis_signed_rows_are_refused_403(rig_for, method):
    sim, server, _ = rig_for(("metrics_mis_signed",), auth=method)
    first = sim.session()  # no row yet: the signature covers all that is sent
    assert (first["event"], first["rows"]) == ("metrics_done", "0")
    for new_rows, rows in ((1, 1), (2, 3)):  # a failed session keeps its rows for the next
        sim.advance(new_rows * SAMPLE)
        end = sim.session()
        assert (end["event"], end["reason"]) == ("metrics_failed", "http_403")
        stored = last_device_data(server)
        assert (stored.status, stored.verdict, stored.error_code) == (403, "rejected", "auth_invalid")
        assert len(json.loads(stored.body)["hd"]) == rows
    assert row_times(server) == []

    good, good_server, _ = rig_for(auth=method)
    assert good.session()["event"] == "metrics_done"
    good.advance(3 * SAMPLE)
    assert good.session()["event"] == "metrics_done"
    assert accepted(good_server)[-1].auth == method and len(row_times(good_server)) == 3


def test_mis_signed_goes_unnoticed_with_a_method_that_does_not_cover_rows(rig_for):
    sim, server, _ = rig_for(("metrics_mis_signed",), auth="ca")
    sim.advance(2 * SAMPLE)
    assert sim.session()["event"] == "metrics_done"
    assert accepted(server)[-1].auth == "ca"


# -- 4. metrics_data_dropped_before_reply -------------------------------------------------------


def _fail_once_then_deliver(sim, proxy) -> tuple[dict, dict, dict]:
    """Two rows, a session the server answers 500 (never stored), a row, then two good sessions."""
    sim.advance(2 * SAMPLE)
    proxy.mode = "http500"
    failed = sim.session()
    assert (failed["event"], failed["reason"]) == ("metrics_failed", "http_500")
    proxy.mode = "pass"
    first = sim.session()
    sim.advance(SAMPLE)
    second = sim.session()
    assert first["event"] == second["event"] == "metrics_done"
    assert proxy.forwarded == 2  # the failed request never reached the server
    return failed, first, second


def test_data_dropped_before_reply_loses_the_rows_of_a_failed_session(rig_for):
    sim, server, proxy = rig_for(("metrics_data_dropped_before_reply",), proxy=True)
    failed, first, second = _fail_once_then_deliver(sim, proxy)
    assert failed["kept"] == "0"
    assert (first["rows"], second["rows"]) == ("0", "1")
    assert row_times(server) == [T0 + 3 * SAMPLE]  # 60 and 120 never arrive

    good, good_server, good_proxy = rig_for(proxy=True)
    failed, first, second = _fail_once_then_deliver(good, good_proxy)
    assert failed["kept"] == "2" and (first["rows"], second["rows"]) == ("2", "1")
    assert row_times(good_server) == [T0 + SAMPLE * i for i in (1, 2, 3)]


# -- 5. metrics_rows_duplicated_on_retry --------------------------------------------------------


def test_rows_duplicated_on_retry_reach_the_server_twice(rig_for):
    sim, server, proxy = rig_for(("metrics_rows_duplicated_on_retry",), proxy=True)
    _, first, second = _fail_once_then_deliver(sim, proxy)
    assert (first["rows"], second["rows"]) == ("2", "3")
    times = row_times(server)
    assert times == [T0 + SAMPLE, T0 + 2 * SAMPLE, T0 + SAMPLE, T0 + 2 * SAMPLE, T0 + 3 * SAMPLE]
    assert {r.verdict for r in server.requests() if r.kind == "device_data"} == {"accepted"}
    assert [r.simple["request_count"] for r in accepted(server)] == [2, 3]

    good, good_server, good_proxy = rig_for(proxy=True)
    _, first, second = _fail_once_then_deliver(good, good_proxy)
    assert (first["rows"], second["rows"]) == ("2", "1")
    assert row_times(good_server) == [T0 + SAMPLE * i for i in (1, 2, 3)]


# -- 6. metrics_tokens_not_applied --------------------------------------------------------------


def _credit_three_days(sim, server, dut) -> tuple[dict, list]:
    target = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    server.registry.set_target(dut.serial_number, target)
    done = sim.session()
    reply = json.loads(accepted(server)[-1].reply)
    return done, reply.get("tkl", [])


def test_tokens_not_applied_acknowledges_the_reply_but_the_count_does_not_move(rig_for, dut):
    sim, server, _ = rig_for(("metrics_tokens_not_applied",))
    sim.advance(2 * SAMPLE)
    done, tkl = _credit_three_days(sim, server, dut)
    assert len(tkl) == 1  # the server answered a token
    assert (done["event"], done["rows"], done["tokens"]) == ("metrics_done", "2", "0/1")
    status = sim.ok("STATUS")
    assert (status["count"], status["payg"]) == ("1", "inactive")
    assert sim.status()["rows"] == "0"  # the reply was acknowledged: rows cleared

    good, good_server, _ = rig_for()
    good.advance(2 * SAMPLE)
    done, tkl = _credit_three_days(good, good_server, dut)
    assert len(tkl) == 1 and (done["rows"], done["tokens"]) == ("2", "1/1")
    status = good.ok("STATUS")
    assert status["count"] == str(good_server.registry.count(dut.serial_number)) != "1"
    assert status["payg"] == "active"


# -- 7. metrics_base_url_not_followed -----------------------------------------------------------


@pytest.mark.parametrize("faulty", [True, False])
def test_base_url_not_followed_keeps_reporting_to_the_old_server(tmp_path, start_metrics_server, dut, faulty):
    new = start_metrics_server()
    old = start_metrics_server(MetricsServerConfig(announce_base_url=new.url))
    sim = Sim(tmp_path, dut, faults=frozenset({"metrics_base_url_not_followed"} if faulty else ()))
    sim.provision(old.url)  # df=0: no format to register on either server
    sim.advance(SAMPLE)
    assert sim.session()["event"] == "metrics_done"  # the reply (with st.base_url) was taken
    sim.advance(SAMPLE)
    assert sim.session()["event"] == "metrics_done"
    if faulty:
        assert not any("metrics_settings" in e for e in sim.events)
        assert (len(accepted(old)), len(accepted(new))) == (2, 0)
        assert sim.ok("METRICS CONFIG")["url"] == old.url
    else:
        assert f"! EVT metrics_settings base_url={new.url}" in sim.events
        assert (len(accepted(old)), len(accepted(new))) == (1, 1)
        assert sim.ok("METRICS CONFIG")["url"] == new.url


# -- 8. metrics_auts_ignored --------------------------------------------------------------------


@pytest.mark.parametrize("faulty", [True, False])
def test_auts_ignored_asks_for_it_but_never_holds_it(rig_for, dut, faulty):
    sim, server, _ = rig_for(("metrics_auts_ignored",) if faulty else ())
    sim.advance(2 * SAMPLE)
    done, tkl = _credit_three_days(sim, server, dut)
    assert done["event"] == "metrics_done" and len(tkl) == 1
    assert accepted(server)[-1].simple["data"]["active_until_timestamp_requested"] in (True, 1)  # asked either way
    reply = json.loads(accepted(server)[-1].reply)
    assert reply["auts"] > 0
    assert sim.status()["auts"] == ("-" if faulty else str(reply["auts"]))
    assert sim.ok("STATUS")["payg"] == "active"  # the tokens were applied either way
