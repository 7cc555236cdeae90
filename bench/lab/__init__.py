"""Several stations from one host (docs/lab.md): `paygo-bench run --rig a.toml --rig b.toml` or
`--lab lab.toml` runs one `paygo-bench run` child process per station at once, so a crash or a
BENCH ERROR in one cannot touch the others; the parent shows a live line per station, then a
table and the worst verdict.

- plan.py: the stations (from rig files or a lab file), every mistake found before anything starts;
- child.py: one station's run as a child process, its progress and its verdict;
- lab.py: the runs side by side, the live lines, Ctrl-C, the table and lab.json.
"""
