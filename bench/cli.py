"""The `paygo-bench` command: run the device suite, start the virtual rig by hand, or run the
OpenPAYGO Metrics server."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

RUN_EXAMPLES = """examples:
  paygo-bench run                               # the full device suite on the virtual rig
  paygo-bench run --rig lab.toml --operator ana # on a real station
  paygo-bench run --suite quick                 # the OpenPAYGO quick test and the essentials
  paygo-bench run --rig lab.toml --suite soak   # 10x the power cuts and drift observation
  paygo-bench run -k tokens                     # only the token tests
  paygo-bench run --sim-fault count_not_persisted  # watch the bench catch a defect
  paygo-bench run -- --power-cut-seed 42        # anything after -- goes to pytest

exit status: 0 the device passed every test it was given; 1 it failed one (or a test errored);
2 interrupted; 3-5 the bench could not run (internal error, usage error, no tests selected)
"""

# What each suite adds to the pytest command line (docs/tests.md "Suites").
SUITES = {
    "quick": ["-m", "quick"],  # tests marked quick: minutes on a real rig
    "full": [],  # every device test
    "soak": ["--soak-factor", "10"],  # every test, endurance settings x10 (fixtures/rig.py)
}

SIM_EXAMPLES = """examples:
  paygo-bench sim                               # prints the serial port and VISA resource
  paygo-bench sim --fault reused_token_accepted --drift-ppm 250
  paygo-bench sim --link socket                 # TCP instead of a pty (as on Windows)
"""


SERVE_EXAMPLES = """examples:
  paygo-bench serve --db metrics.db             # the rig's DUT, payload auth, http://127.0.0.1:8080/
  paygo-bench serve --db m.db --devices devices.csv --port 0   # an OpenPAYGO device list, any free port
  paygo-bench serve --db m.db --jwt-secret-file jwt.key --auth either --base-path /metrics/
  paygo-bench serve --db m.db --cert server.pem --key server.key   # HTTPS
"""


def repo_root() -> Path:
    """The checkout holding tests/device (bench.detection.runner.find_root), or exit saying so."""
    from bench.detection.runner import find_root

    try:
        return find_root()
    except FileNotFoundError as e:
        raise SystemExit(f"paygo-bench: {e}") from None


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    import pytest

    from bench.rig import RigError, resolve_rig

    try:
        rig = resolve_rig(args.rig)
    except RigError as e:
        print(f"paygo-bench: {e}", file=sys.stderr)
        return 2
    root = repo_root()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]', '_', rig.station.id)}"
    run_dir = Path(args.report_dir) if args.report_dir else root / "reports" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    pytest_args = [
        str(root / "tests" / "device"),
        "--rootdir", str(root),
        "-c", str(root / "pyproject.toml"),
        "--report-dir", str(run_dir),
        f"--html={run_dir / 'report.html'}",
        "--self-contained-html",
        f"--junitxml={run_dir / 'junit.xml'}",
        "-o", "junit_family=xunit2",
        "-rfEs",
        "--tb=short",
        "-v",  # one line per test as it finishes, with [done/total]: the progress
        "-o", "console_output_style=count",
    ]
    pytest_args += SUITES[args.suite]
    if args.rig:
        pytest_args += ["--rig", args.rig]
    if args.operator:
        pytest_args += ["--operator", args.operator]
    if args.k:
        pytest_args += ["-k", args.k]
    for fault in args.sim_fault:
        pytest_args += ["--sim-fault", fault]
    print(f"paygo-bench: station {rig.station.id}, {'virtual rig' if rig.virtual else rig.source}, "
          f"{args.suite} suite")
    code = int(pytest.main(pytest_args + extra))
    print(f"paygo-bench: report {run_dir / 'report.html'}")
    print(f"paygo-bench: record {run_dir / 'record.json'}")
    print(f"paygo-bench: {verdict_line(run_dir / 'record.json', code)}")
    return code


def verdict_line(record_path: Path, code: int) -> str:
    """What the run concluded about the device, from its record (pytest's code if it has none)."""
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        status, counts, reason = record["status"], record["counts"], record.get("status_reason")
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable record; pytest exit status {code}"
    tally = ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in ("passed", "failed", "error", "not_covered", "skipped")
                      if counts.get(k))
    word = {"passed": "DEVICE PASSED", "failed": "DEVICE FAILED"}.get(status, f"RUN {status.upper()}")
    return f"{word} ({tally or 'no tests'})" + (f": {reason}" if reason and status != "passed" else "")


def cmd_sim(args: argparse.Namespace, extra: list[str]) -> int:
    from bench.sim.virtual_rig import main as sim_main

    options = {"faults": args.fault, "rtc_drift_ppm": args.drift_ppm, "link": args.link}
    return sim_main(["--human", "--options", json.dumps(options)])


def cmd_serve(args: argparse.Namespace, extra: list[str]) -> int:
    import logging

    from bench.rig import RigError, resolve_rig
    from bench.secret import Secret
    from bench.server.app import create_app
    from bench.server.config import MetricsServerConfig
    from bench.server.devices import DeviceFileError, DeviceRegistry, device_from_profile, load_devices
    from bench.server.serve import is_loopback, start
    from bench.server.store import Store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.devices:
            devices = load_devices(args.devices)
        else:
            devices = [device_from_profile(resolve_rig(args.rig).dut)]
        secret = None
        if args.jwt_secret_file:
            secret = Secret(Path(args.jwt_secret_file).read_text(encoding="utf-8").strip(), "jwt secret")
        config = MetricsServerConfig(
            base_path=args.base_path, auth=args.auth, jwt_secret=secret, announce_base_url=args.announce_base_url,
            tokens_as_strings=args.tokens_as_strings,
            cert_file=Path(args.cert) if args.cert else None, key_file=Path(args.key) if args.key else None)
    except (RigError, DeviceFileError, ValueError, OSError) as e:
        print(f"paygo-bench serve: {e}", file=sys.stderr)
        return 2
    store = Store(args.db)
    registry = DeviceRegistry(devices, store)
    server = start(create_app(config, store, registry), args.host, args.port, base_path=config.base_path,
                   cert_file=config.cert_file, key_file=config.key_file)
    if not is_loopback(args.host):
        print(f"paygo-bench serve: WARNING: listening on {args.host}, reachable from other machines",
              file=sys.stderr)
    print(f"paygo-bench: Metrics server on {server.base_url}/ (db {args.db}, {len(registry)} device(s), "
          f"auth {config.auth}); Ctrl-C stops it", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        store.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paygo-bench", description="Hardware-in-the-loop test bench for OpenPAYGO devices.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the device suite and write reports/<run-id>/",
                         epilog=RUN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--rig", help="rig file (TOML); default $PAYGO_BENCH_RIG, else the virtual rig")
    run.add_argument("--operator", default="", help="operator name for the record")
    run.add_argument("--suite", choices=tuple(SUITES), default="full",
                     help="quick: the tests marked quick; full: every device test (default); soak: every "
                     "test with 10x the power cuts and drift observation")
    run.add_argument("-k", help="only tests matching this pytest -k expression")
    run.add_argument("--report-dir", help="write here instead of reports/<run-id>/")
    run.add_argument("--sim-fault", action="append", default=[], metavar="NAME",
                     help="switch on a simulator defect (virtual rig only; repeatable)")
    run.set_defaults(func=cmd_run)

    sim = sub.add_parser("sim", help="start the virtual rig and leave it running for a person to poke",
                         epilog=SIM_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sim.add_argument("--fault", action="append", default=[], metavar="NAME", help="switch on a defect (repeatable)")
    sim.add_argument("--drift-ppm", type=float, default=0.0, help="RTC drift in ppm")
    sim.add_argument("--link", choices=("auto", "pty", "socket"), default="auto")
    sim.set_defaults(func=cmd_sim)

    serve = sub.add_parser("serve", help="run the OpenPAYGO Metrics server (docs/server.md) until Ctrl-C",
                           epilog=SERVE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (0 = any free port; default 8080)")
    serve.add_argument("--db", required=True, help="SQLite file storing every request (created if absent)")
    serve.add_argument("--devices", help="device file: .toml, .json or an OpenPAYGO device-list .csv "
                       "(default: the rig's DUT)")
    serve.add_argument("--rig", help="rig file whose DUT is served when --devices is not given")
    serve.add_argument("--jwt-secret-file", help="file holding the HS256 secret for Authorization: JWT")
    serve.add_argument("--auth", choices=("payload", "jwt", "either", "none"), default="payload",
                       help="authentication a device-data POST needs (default payload)")
    serve.add_argument("--base-path", default="/", help="URL path the routes live under (default /)")
    serve.add_argument("--announce-base-url", help="send settings.base_url in every reply (server migration)")
    serve.add_argument("--tokens-as-strings", action="store_true", help="tkl items as zero-padded strings")
    serve.add_argument("--cert", help="TLS certificate (PEM): serve HTTPS")
    serve.add_argument("--key", help="TLS private key (PEM)")
    serve.set_defaults(func=cmd_serve)

    from bench.history.command import add_parser as add_history_parser

    add_history_parser(sub)

    from bench.detection.command import add_parser as add_selftest_parser

    add_selftest_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # everything after -- goes to pytest untouched
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    return args.func(args, extra)


if __name__ == "__main__":
    sys.exit(main())
