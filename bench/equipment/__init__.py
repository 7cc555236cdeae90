"""The bench's own test equipment that stands between the bench and a rig: fault-injecting
proxies and relays. It is not part of what it stands in front of (the Metrics server, the DUT's
link), and imports nothing of the bench but stdlib-level helpers."""
