"""The interface every DUT protocol adapter implements, and the typed results it returns.

Tests talk to a `DeviceAdapter`, never to the serial link: the reference protocol and the
OpenPAYGO HDK protocol (and any manufacturer's) look the same to them. Each adapter declares
the capabilities it can exercise on its device; tests that need more are skipped with the reason.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from bench.dut.link import SerialLink
from bench.secret import Secret


@dataclass(frozen=True)
class Identity:
    model: str
    firmware: str
    protocol: str
    serial_number: str | None  # None: not provisioned
    capabilities: frozenset[str]


@dataclass(frozen=True)
class Banner:
    line: str
    fields: dict[str, str]
    at: float  # monotonic time it arrived


@dataclass(frozen=True)
class Provisioning:
    serial_number: str
    secret_key: Secret
    starting_code: int
    token_count: int = 1
    time_divider: int = 1
    restricted_digits: bool = False
    metrics_url: str = ""
    data_format_id: int = 0
    auth: str = "none"


@dataclass(frozen=True)
class TokenOutcome:
    """kind, value and count are None where the DUT's protocol does not report them."""

    result: str  # accepted | invalid | already_used | locked
    kind: str | None = None  # ADD_TIME | SET_TIME | DISABLE_PAYG | COUNTER_SYNC
    value: int | None = None
    count: int | None = None
    locked_s: int | None = None
    elapsed_s: float = 0.0  # request to reply, host side
    seconds_left: int | None = None  # credit left after the token, where the reply carries it (HDK)


@dataclass(frozen=True)
class DeviceStatus:
    """None marks what the DUT's protocol does not report (the HDK reports no count, say)."""

    payg: str  # active | inactive | disabled
    seconds_left: int
    active_until: int | None = None
    token_count: int | None = None
    invalid_streak: int | None = None
    locked_s: int | None = None


@dataclass(frozen=True)
class NvmInfo:
    slot: str
    seq: int
    crc_ok: bool
    writes: int
    size: int


@dataclass(frozen=True)
class MetricsExport:
    """The OpenPAYGO Metrics request a device would send now (docs/protocol.md "Metrics bridge")."""

    content_type: str  # application/json | application/cbor
    request_count: int  # rc: incremented and stored on every export
    payload: bytes


@dataclass(frozen=True)
class MetricsConfig:
    """The device's Metrics settings as `METRICS CONFIG` reports them (docs/protocol.md "Metrics
    sessions")."""

    mode: str  # off | direct | bridge
    period_s: float  # a session every period
    sample_s: int  # a historical row every sample_s
    encoding: str  # json | cbor
    auth: str  # none | sa | ta | ca | da | ra
    data_format_id: int  # 0: none yet (the device embeds its format)
    url: str | None  # the base URL; None: none set ("-"); "?" if the device holds one it cannot use


@dataclass(frozen=True)
class MetricsStatus:
    """`METRICS STATUS`: the device's own account of its sessions since boot. Informative: tests
    judge what reached the server, not what the device says it sent."""

    mode: str
    request_count: int  # the last rc, from NVM
    rows: int  # rows buffered (the request in flight included)
    inflight: int | None  # rc of the request awaiting a reply
    requests: int
    answered: int
    failed: int
    sent_rows: int
    dropped: int
    tokens: int  # tokens from replies that were accepted
    last: str | None  # ok | the last failure reason | None (no session yet)
    active_until: int | None  # the last `auts` received
    seconds_left: int | None  # the last `asl` received
    reply_at: int | None  # the RTC second they came


@dataclass(frozen=True)
class MetricsFormat:
    """`METRICS FORMAT`: the device's compiled-in OpenPAYGO Data Format object."""

    data_format_id: int  # the id the device holds (0: none)
    interval: int  # its historical_data_interval, s
    data_format: dict  # the Data Format object as the device sent it (decoded JSON)


@dataclass(frozen=True)
class MetricsImported:
    """What the device did with a relayed Metrics reply (`METRICS IMPORT`)."""

    tokens_accepted: int
    tokens_received: int
    request_count: int | None = None  # the request it answered (None: protocol 1.0 minimal bridge)
    rows_cleared: int | None = None


class CapabilityMissing(Exception):
    def __init__(self, capability: str, adapter: str) -> None:
        super().__init__(f"the {adapter} adapter/DUT does not offer '{capability}'")
        self.capability = capability


class DeviceAdapter(ABC):
    name: str = "abstract"
    # What the adapter's protocol itself guarantees, whatever the device reports or the rig
    # declares (the reference protocol always has ID; the HDK's has no identity command).
    protocol_capabilities: frozenset[str] = frozenset()
    # The device applies a provisioning only after a restart (the HDK says "RESTART DEVICE."):
    # whoever provisions must power-cycle it before using it.
    restart_after_provision: bool = False
    # The protocol can say a token was refused because entry is locked (the reference protocol's
    # `result=locked`). The HDK's cannot: a locked entry there is answered like an invalid one.
    reports_locked: bool = True
    # The most seconds of credit left the protocol can report (None: no limit). The HDK's uint32
    # difference reads 2^31 and above as an expired credit that wrapped.
    max_seconds_left: int | None = None
    # The major version of the test protocol this adapter speaks (what a DUT's ID must report).
    protocol_major: int | None = None
    link: SerialLink  # the DUT's serial link: adapters log to its traffic log

    def __init__(self, link: SerialLink, reply_timeout_s: float = 2.0, declared: frozenset[str] | None = None) -> None:
        """How the bench builds every adapter (bench/dut/registry.py): the link, the reply
        timeout, the capabilities the rig declares (None: as the device reports)."""
        self.link = link
        self.reply_timeout_s = reply_timeout_s

    @property
    @abstractmethod
    def capabilities(self) -> frozenset[str]:
        """What the device offers (docs/protocol.md "Capabilities"): reported or rig-declared."""

    def offers(self, capability: str) -> bool:
        """Whether a test needing this capability can run: the device's or the protocol's."""
        return capability in self.protocol_capabilities or capability in self.capabilities

    def require(self, capability: str) -> None:
        if not self.offers(capability):
            raise CapabilityMissing(capability, self.name)

    @abstractmethod
    def wait_boot(self, timeout_s: float, since: float | None = None) -> Banner: ...

    def parse_banner(self, line: str, at: float | None = None) -> Banner:
        """A boot banner line as this protocol's Banner, the one parser of it (the fields its
        protocol puts there: the reference protocol's model=, fw=, proto=, reset=, nvm=)."""
        return Banner(line, {}, time.monotonic() if at is None else at)

    @abstractmethod
    def ping(self) -> None: ...

    @abstractmethod
    def identify(self) -> Identity:
        """Raises CapabilityMissing('identity') where the protocol has no identity command."""

    @abstractmethod
    def provision(self, p: Provisioning) -> str:
        """Returns the serial number the device confirmed."""

    @abstractmethod
    def enter_token(self, code: str) -> TokenOutcome: ...

    @abstractmethod
    def status(self) -> DeviceStatus: ...

    def rtc_read(self) -> float:
        raise CapabilityMissing("rtc", self.name)

    def rtc_set(self, t: int) -> None:
        raise CapabilityMissing("rtc_set", self.name)

    def nvm_info(self) -> NvmInfo:
        raise CapabilityMissing("nvm", self.name)

    def factory_reset(self, boot_timeout_s: float) -> Banner:
        raise CapabilityMissing("factory_reset", self.name)

    def metrics_export(self) -> MetricsExport:
        """The device's next Metrics request, its request counter advanced (metrics_bridge)."""
        raise CapabilityMissing("metrics_bridge", self.name)

    def metrics_import(self, body: bytes, content_type: str | None = None) -> MetricsImported:
        """Hand the device the server's reply to its exported request (metrics_bridge)."""
        raise CapabilityMissing("metrics_bridge", self.name)

    def metrics_configure(
        self,
        url: str | None,
        data_format_id: int,
        auth: str,
        mode: str | None = None,
        period_s: float | None = None,
        sample_s: int | None = None,
    ) -> MetricsConfig:
        """Set the device's Metrics base URL (None: no base URL), data format id and payload auth
        (kept in NVM), and optionally its mode, session period and sample interval (until the next
        boot) (metrics_report)."""
        raise CapabilityMissing("metrics_report", self.name)

    def metrics_config(self) -> MetricsConfig:
        """The device's Metrics settings, unchanged (metrics_report)."""
        raise CapabilityMissing("metrics_report", self.name)

    def metrics_status(self) -> MetricsStatus:
        raise CapabilityMissing("metrics_report", self.name)

    def metrics_report_now(self) -> None:
        """Start a Metrics session now (at the next RTC second at the latest) (metrics_report)."""
        raise CapabilityMissing("metrics_report", self.name)

    def metrics_format(self) -> MetricsFormat:
        """The device's compiled-in data format, for the bench to register (metrics_report)."""
        raise CapabilityMissing("metrics_report", self.name)
