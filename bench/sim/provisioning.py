"""The firmware's factory provisioning (`PROV`): identity, key, starting code and Metrics
settings checked and written to NVM once, and the defects that live there."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from typing import TYPE_CHECKING

from bench.sim.faults import Fault
from bench.sim.metrics.settings import AUTH_METHODS, NO_URL, URL_USAGE, url_to_store
from bench.sim.nvstate import NvState
from bench.sim.request_line import CommandError, Reply, int_arg, parse_kv
from bench.sim.uptime_credit import UptimeCredit

_SERIAL = re.compile(r"[A-Za-z0-9_-]{1,32}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")


class ProvisioningCommand:
    """A part of Firmware (bench/sim/firmware.py): the PROV command."""

    if TYPE_CHECKING:  # provided by Firmware, which this part makes up with the others

        def _persist(self) -> None: ...

    faults: frozenset[Fault]
    state: NvState
    credit: UptimeCredit | None

    def _prov(self, args: list[str]) -> Reply:
        kv = parse_kv(args)
        if self.state.provisioned:
            raise CommandError(409, "already provisioned")
        for required in ("sn", "key", "sc"):
            if required not in kv:
                raise CommandError(400, f"missing {required}=")
        unknown = set(kv) - {"sn", "key", "sc", "count", "td", "rd", "url", "df", "auth"}
        if unknown:
            raise CommandError(400, f"unknown argument {sorted(unknown)[0]}=")
        if not _SERIAL.fullmatch(kv["sn"]):
            raise CommandError(400, "sn= must be 1-32 characters A-Z a-z 0-9 _ -")
        if not _HEX32.fullmatch(kv["key"]):
            raise CommandError(400, "key= must be 32 hex digits")
        sc = int_arg(kv, "sc", 0, 999_999_999)
        count = int_arg(kv, "count", 0, 65535, default=1)
        td = int_arg(kv, "td", 1, 255, default=1)
        rd = int_arg(kv, "rd", 0, 1, default=0)
        df = int_arg(kv, "df", 0, 2**31 - 1, default=0)
        auth = kv.get("auth", "none")
        if auth not in AUTH_METHODS:
            raise CommandError(400, f"auth= must be one of {','.join(sorted(AUTH_METHODS))}")
        url = url_to_store(kv.get("url", NO_URL))
        if url is None:
            raise CommandError(400, URL_USAGE)
        serial = kv["sn"][:8] if Fault.SERIAL_TRUNCATED in self.faults else kv["sn"]
        self.state = replace(
            self.state,
            provisioned=True,
            serial=serial,
            key_hex=kv["key"].lower(),
            starting_code=sc,
            time_divider=td,
            restricted=bool(rd),
            metrics_url=url,
            data_format_id=df,
            auth=auth,
            last_count=count,
            used_mask=0,
            active_until=0,
            payg_disabled=False,
            invalid_streak=0,
            locked_until=0,
            metrics_rc=0,
        )
        if self.credit is not None:
            self.credit.set_end(0)
        self._persist()
        extra = f" key={self.state.key_hex}" if Fault.KEY_ECHOED in self.faults else ""
        if Fault.KEY_ECHOED_BASE64 in self.faults:
            extra += f" dbg={base64.b64encode(bytes.fromhex(self.state.key_hex)).decode('ascii')}"
        return Reply(f"OK sn={self.state.serial}{extra}")
