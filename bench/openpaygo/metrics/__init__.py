"""OpenPAYGO Metrics, both ends of it: bytes and values (wire), requests parsed and expanded (codec)
or built and condensed (condense), Data Formats (format), the short keys (keys), times (timestamps),
payload and reply signatures (auth), the Server Response (reply) and the error catalogue (errors).
The catalogue of modules and what they hold: docs/server.md."""
