"""The bench's own test equipment that stands between the bench and a rig: fault-injecting
proxies and relays. It is no part of what it stands in front of (the Metrics server, the PSU, the
DUT's link) and imports only the standard library (the RFC 2217 server: pyserial too). The Metrics
fault proxy: docs/fault-proxy.md; the SCPI fault proxy in front of a PSU (a dropped connection, a
stuck relay, a lying output-state query, scpi_proxy.py) and the serial link's pty relay
(pty_relay.py): docs/bench-faults.md; the RFC 2217 server that serves a local serial port on the
network as ser2net does (rfc2217_server.py): docs/rig.md "[link]"."""
