"""The test specs the bench ships (docs/spec.md): one TOML file per adapter, the default spec of a
rig whose DUT profile names none (`bench.measure.spec.default_spec_path`)."""
