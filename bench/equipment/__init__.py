"""The bench's own test equipment that stands between the bench and a rig: fault-injecting
proxies and relays. It is no part of what it stands in front of (the Metrics server, the DUT's
link) and imports only the standard library. The Metrics fault proxy: docs/fault-proxy.md; the
serial link's pty relay: docs/bench-faults.md."""
