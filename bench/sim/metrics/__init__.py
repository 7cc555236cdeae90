"""The simulated device's OpenPAYGO Metrics reporting: its compiled-in data format, its sensors,
the payloads it builds and checks, the sessions that send them and the firmware's METRICS commands
(docs/simulator.md, docs/protocol.md "Metrics sessions")."""
