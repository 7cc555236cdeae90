"""The reference firmware's `METRICS` commands (docs/protocol.md "Metrics bridge" and "Metrics
sessions"): FORMAT, CONFIG, STATUS, REPORT, EXPORT and IMPORT, over its Metrics session, and
protocol 1.0's minimal bridge while Metrics are off."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bench.sim.firmware_config import FirmwareConfig
from bench.sim.metrics.payload import ReplyRefused, compact_json
from bench.sim.metrics.session import MetricsSession, NothingPending
from bench.sim.metrics.settings import AUTH_METHODS, NO_URL, URL_USAGE, url_to_store, valid_base_url
from bench.sim.nvstate import NvState
from bench.sim.request_line import CommandError, Reply, int_arg, parse_kv


class MetricsCommands:
    """A part of Firmware (bench/sim/firmware.py): the METRICS command family."""

    if TYPE_CHECKING:  # provided by Firmware, which this part makes up with the others

        def _require_provisioned(self) -> None: ...
        def _persist(self) -> None: ...
        def enter_token(self, code: str) -> str: ...

    config: FirmwareConfig
    state: NvState
    metrics: MetricsSession

    def _metrics(self, args: list[str]) -> Reply:
        """METRICS FORMAT | CONFIG | STATUS | REPORT | EXPORT | IMPORT (docs/protocol.md "Metrics
        bridge" and "Metrics sessions"). With metrics off, EXPORT and IMPORT keep protocol 1.0's
        minimal bridge (below); otherwise they carry the session's real request and reply."""
        sub = args[0] if args else ""
        if sub == "FORMAT" and len(args) == 1:  # compiled in: no provisioning needed
            fmt = compact_json(self.metrics.format).encode()
            return Reply(
                f"OK id={self.state.data_format_id} interval={self.config.metrics_sample_s} "
                f"b64={base64.b64encode(fmt).decode()}"
            )
        self._require_provisioned()
        if sub == "CONFIG":
            return self._metrics_config(args[1:])
        if sub == "STATUS" and len(args) == 1:
            fields = {**self.metrics.status(), "rc": self.state.metrics_rc}
            return Reply("OK " + " ".join(f"{k}={v}" for k, v in fields.items()))
        if sub == "REPORT" and len(args) == 1:
            if self.metrics.settings.mode == "off":
                raise CommandError(409, "metrics are off (METRICS CONFIG mode=direct|bridge)")
            self.metrics.report_now()
            return Reply("OK")
        if self.metrics.settings.mode == "off":
            return self._metrics_minimal(args)
        if args == ["EXPORT"]:
            inf, wait_s = self.metrics.export()
            req = inf.request
            return Reply(
                f"OK ct={req.content_type} rc={req.rc} b64={base64.b64encode(req.body).decode()}", delay_s=wait_s
            )
        if len(args) in (2, 3) and args[0] == "IMPORT" and args[1].startswith("b64="):
            kv = parse_kv(args[2:])
            if set(kv) - {"ct"}:
                raise CommandError(400, "usage: METRICS IMPORT b64=<reply> [ct=<content type>]")
            try:
                body = base64.b64decode(args[1][4:], validate=True)
            except (binascii.Error, ValueError):
                raise CommandError(400, "IMPORT b64= is not base64") from None
            try:
                done = self.metrics.import_reply(body, kv.get("ct"))
            except NothingPending:
                raise CommandError(409, "no exported request awaits a reply") from None
            except ReplyRefused as e:
                raise CommandError(422, f"reply refused: {e.reason}: {e.detail}") from None
            return Reply(f"OK tokens={done.tokens_accepted}/{done.tokens_received} rc={done.rc} rows={done.rows}")
        raise CommandError(
            400,
            "usage: METRICS EXPORT | METRICS IMPORT b64=<reply> | METRICS CONFIG ... | "
            "METRICS STATUS | METRICS REPORT | METRICS FORMAT",
        )

    def _metrics_config(self, args: list[str]) -> Reply:
        """METRICS CONFIG [mode=] [period=] [sample=] [enc=] [url=] [df=] [auth=]: url, df and
        auth are written to NVM (as PROV's); the others last until the next boot."""
        kv = parse_kv(args)
        unknown = set(kv) - {"mode", "period", "sample", "enc", "url", "df", "auth"}
        if unknown:
            raise CommandError(400, f"unknown argument {sorted(unknown)[0]}=")
        settings = self.metrics.settings
        changes: dict[str, Any] = {}
        if "mode" in kv:
            changes["mode"] = kv["mode"]
        if "period" in kv:
            if not re.fullmatch(r"[0-9]{1,7}(\.[0-9]{1,3})?", kv["period"]):
                raise CommandError(400, "period= must be seconds, e.g. 3600 or 0.5")
            changes["period_s"] = float(kv["period"])
        if "sample" in kv:
            changes["sample_s"] = int_arg(kv, "sample", 1, 86400)
        if "enc" in kv:
            changes["encoding"] = kv["enc"]
        try:
            settings = replace(settings, **changes)
        except ValueError as e:
            raise CommandError(400, str(e)) from None
        state = self.state
        url = state.metrics_url
        if "url" in kv:
            stored = url_to_store(kv["url"])
            if stored is None:
                raise CommandError(400, URL_USAGE)
            url = stored
        auth = kv.get("auth", state.auth)
        if auth not in AUTH_METHODS:
            raise CommandError(400, f"auth= must be one of {','.join(sorted(AUTH_METHODS))}")
        new_state = replace(
            state,
            metrics_url=url,
            data_format_id=int_arg(kv, "df", 0, 2**31 - 1, default=state.data_format_id),
            auth=auth,
        )
        if new_state != state:
            self.state = new_state
            self._persist()
        self.metrics.configure(settings)
        st = self.state
        shown = st.metrics_url if valid_base_url(st.metrics_url) else (NO_URL if not st.metrics_url else "?")
        return Reply(
            f"OK mode={settings.mode} period={settings.period_s:g} sample={settings.sample_s} "
            f"enc={settings.encoding} auth={st.auth} df={st.data_format_id} url={shown}"
        )

    def _metrics_minimal(self, args: list[str]) -> Reply:
        """Metrics off: protocol 1.0's minimal bridge. EXPORT gives a simple-form request with the
        token count only (no format, time or signature: nothing is configured), rc incremented
        and stored; IMPORT applies a reply's tkl tokens, whatever else it holds."""
        if args == ["EXPORT"]:
            self.state = replace(self.state, metrics_rc=self.state.metrics_rc + 1)
            self._persist()
            payload = {
                "serial_number": self.state.serial,
                "request_count": self.state.metrics_rc,
                "data": {"token_count": self.state.last_count},
            }
            body = json.dumps(payload, separators=(",", ":")).encode()
            return Reply(f"OK ct=application/json rc={self.state.metrics_rc} b64={base64.b64encode(body).decode()}")
        if len(args) == 2 and args[0] == "IMPORT" and args[1].startswith("b64="):
            try:
                reply = json.loads(base64.b64decode(args[1][4:], validate=True))
            except (binascii.Error, ValueError):
                raise CommandError(400, "IMPORT b64= is not base64 of a JSON object") from None
            if not isinstance(reply, dict):
                raise CommandError(400, "IMPORT payload is not a JSON object")
            tokens = reply.get("tkl", reply.get("token_list", []))
            if not isinstance(tokens, list):
                raise CommandError(400, "IMPORT tkl is not a list")
            accepted = 0
            for token in tokens:
                code = str(token).zfill(9) if isinstance(token, int) else str(token)
                if code.isdigit() and self.enter_token(code).startswith("OK result=accepted"):
                    accepted += 1
            return Reply(f"OK tokens={accepted}/{len(tokens)}")
        raise CommandError(400, "usage: METRICS EXPORT | METRICS IMPORT b64=<reply>")
