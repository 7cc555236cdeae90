"""The `paygo-bench` command: run the device suite, start the virtual rig by hand, or run the
OpenPAYGO Metrics server."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench.record.verdict import EXIT_CODES, USAGE_EXIT

RUN_EXAMPLES = """examples:
  paygo-bench run                               # the full device suite on the virtual rig
  paygo-bench run --rig lab.toml --operator ana # on a real station
  paygo-bench run --suite quick                 # the OpenPAYGO quick test and the essentials
  paygo-bench run --suite token                 # OpenPAYGO Token certification
  paygo-bench run --rig lab.toml --suite soak   # 10x the power cuts and drift observation
  paygo-bench run -k tokens                     # only the token tests (INCOMPLETE: not all required ran)
  paygo-bench run --sim-fault count_not_persisted  # watch the bench catch a defect
  paygo-bench run -- --power-cut-seed 42        # anything after -- goes to pytest
  paygo-bench run --rig lab.toml --resync       # a DUT given tokens elsewhere: re-base it from its ledger
  paygo-bench run --rig a.toml --rig b.toml     # two stations at once: a live line each, a table, the worst verdict
  paygo-bench run --lab docs/rigs/lab-4-virtual.toml --suite quick  # four virtual stations, one with a defect

exit status (the verdict, also the last line printed):
  0  PASSED       every test the suite profile requires ran and passed
  1  FAILED       the device failed a test (or a test errored)
  2  INCOMPLETE   a required test did not run and pass, nothing ran, or the run was interrupted
  3  BENCH ERROR  the rig or the bench broke (port missing, PSU silent, bad rig file, a full disk): the device is not judged
  4  usage error  the paygo-bench command line was wrong (--report-dir holding another run's files included)
  several stations (--rig twice or more, --lab): the worst station's verdict, FAILED first, then
  BENCH ERROR, INCOMPLETE, PASSED; 0 only when every station PASSED (docs/lab.md)
"""

SIM_EXAMPLES = """examples:
  paygo-bench sim                               # prints the serial port and VISA resource
  paygo-bench sim --fault reused_token_accepted --drift-ppm 250
  paygo-bench sim --link socket                 # TCP instead of a pty (as on Windows)
"""


CHECK_EXAMPLES = """examples:
  paygo-bench check --rig lab.toml    # every error of the rig file, then PSU, port and DUT
  paygo-bench check                   # the built-in virtual rig (the simulator is started for it)

exit status: 0 ready; 3 the rig file has errors or an instrument did not answer (BENCH ERROR)
"""


SERVE_EXAMPLES = """examples:
  paygo-bench serve --db metrics.db             # the rig's DUT, payload auth, http://127.0.0.1:8080/
  paygo-bench serve --db m.db --devices devices.csv --port 0   # an OpenPAYGO device list, any free port
  paygo-bench serve --db m.db --jwt-secret-file jwt.key --auth either --base-path /metrics/
  paygo-bench serve --db m.db --cert server.pem --key server.key   # HTTPS
  paygo-bench serve --db m.db --host 0.0.0.0 --jwt-secret-file jwt.key   # reachable by a DUT on the lab network

exit status:
  0  stopped by Ctrl-C
  2  a device, rig or JWT secret file it cannot use, or a bad --base-path / --cert / --key
  4  usage error: the command line was wrong (a non-loopback --host without --jwt-secret-file included)
"""


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    if args.lab or len(args.rig) > 1:
        return cmd_lab(args, extra)
    args.rig = args.rig[0] if args.rig else None
    import pytest

    from bench.record.verdict import BENCH_ERROR
    from bench.rig import RigError, resolve_rig
    from bench.suites import DEFAULT_SUITE, SuiteError, load_profile

    try:
        rig = resolve_rig(args.rig)
        suite = args.suite or rig.dut.suite or DEFAULT_SUITE
        if not args.suite and rig.dut.suite:
            load_profile(rig.dut.suite, f"{rig.source}: dut.suite")
    except (RigError, SuiteError) as e:
        print(f"paygo-bench: {BENCH_ERROR}: {e}", file=sys.stderr)
        return EXIT_CODES[BENCH_ERROR]
    if args.sim_fault:  # refused before a run directory or anything else exists
        from bench.sim import faults as sim_faults

        if not rig.virtual:
            print(f"paygo-bench run: error: --sim-fault works only on the virtual rig ({rig.source})", file=sys.stderr)
            return USAGE_EXIT
        try:
            sim_faults.validate(args.sim_fault)
        except ValueError as e:
            print(f"paygo-bench run: error: --sim-fault: {e}", file=sys.stderr)
            return USAGE_EXIT
    from bench.history.publish import publish_run
    from bench.locations import RunDirError, RunDirInUse, checkout_root, new_run_dir, reports_root
    from bench.suites import DEVICE_SUITE

    root = checkout_root()
    try:  # a new directory for this run alone, or the --report-dir named, new or empty
        run_dir = new_run_dir(Path(args.report_dir) if args.report_dir else None, reports_root(), rig.station.id)
    except RunDirInUse as e:
        print(f"paygo-bench run: error: {e}", file=sys.stderr)
        return USAGE_EXIT
    except RunDirError as e:
        print(f"paygo-bench: {BENCH_ERROR}: {e}", file=sys.stderr)
        return EXIT_CODES[BENCH_ERROR]
    record = run_dir / "record.json"
    before = _stamp(record)
    # From a checkout: its settings and node ids (tests/device/...). Installed: the suite in the
    # package, rooted at itself, and none of the current folder's pytest settings.
    # No pytest cache: a run is always the whole suite profile (--lf is for developers), and runs
    # side by side on one checkout must not write one cache.
    where = (
        ["--rootdir", str(root), "-c", str(root / "pyproject.toml"), "-p", "no:cacheprovider"]
        if root is not None
        else ["--rootdir", str(DEVICE_SUITE), "-c", os.devnull, "-p", "no:cacheprovider"]
    )
    pytest_args = [
        str(DEVICE_SUITE),
        *where,
        "--report-dir",
        str(run_dir),
        f"--html={run_dir / 'report.html'}",
        "--self-contained-html",
        f"--junitxml={run_dir / 'junit.xml'}",
        "-o",
        "junit_family=xunit2",
        "-rfEs",
        "--tb=short",
        "-v",  # one line per test as it finishes, with [done/total]: the progress
        "-o",
        "console_output_style=count",
    ]
    for option, value in (("--suite", args.suite), ("--rig", args.rig), ("--operator", args.operator), ("-k", args.k)):
        if value:
            pytest_args += [option, value]
    for fault in args.sim_fault:
        pytest_args += ["--sim-fault", fault]
    pytest_args += [flag for flag, on in (("--resync", args.resync), ("--reprovision", args.reprovision)) if on]
    print(f"paygo-bench: station {rig.station.id}, {'virtual rig' if rig.virtual else rig.source}, suite {suite}")
    session = SessionVerdict()
    plugins: list[object] = [session]
    live = None
    if args.ui:
        from bench.live.run import LivePage, LivePageError

        try:
            live = LivePage.start(rig, suite, run_dir, args.ui_port)
        except LivePageError as e:
            print(f"paygo-bench: {BENCH_ERROR}: {e}", file=sys.stderr)
            return EXIT_CODES[BENCH_ERROR]
        plugins.append(live.plugin)
        print(f"paygo-bench: live page {live.url}", flush=True)
    judged: tuple[str, str] | None = None
    try:
        code = int(pytest.main(pytest_args + extra, plugins=plugins))
        stale = _stamp(record) == before
        verdict, line = judged = session.judged or run_verdict(record, code, stale=stale)
    finally:
        if live is not None:  # the page shows the verdict, then stops (also on Ctrl-C)
            live.finish(*(judged or (BENCH_ERROR, "the run stopped before its verdict")), args.ui_hold)
    print("\n".join(f"paygo-bench: {line}" for line in publish_run(record, rig, stale).splitlines()))
    print(f"paygo-bench: report {run_dir / 'report.html'}")
    print(f"paygo-bench: record {record}")
    print(f"paygo-bench: {supply_line(record, stale)}")
    print(f"paygo-bench: {line}")
    return EXIT_CODES[verdict]


def cmd_lab(args: argparse.Namespace, extra: list[str]) -> int:
    """Several stations at once, each its own `paygo-bench run` child (bench/lab, docs/lab.md)."""
    from bench.lab.lab import run_lab
    from bench.lab.plan import LabError, from_lab_file, from_rig_files
    from bench.locations import RunDirError, RunDirInUse, new_run_dir, reports_root
    from bench.record.verdict import BENCH_ERROR

    if args.lab and args.rig:
        print("paygo-bench run: error: --lab and --rig: name the stations one way, not both", file=sys.stderr)
        return USAGE_EXIT
    single = [f for f, on in (("--sim-fault", args.sim_fault), ("--ui", args.ui), ("--resync", args.resync),
                               ("--reprovision", args.reprovision)) if on]  # fmt: skip
    if single:
        print(
            f"paygo-bench run: error: {', '.join(single)} with several stations: give a station its fault in its "
            "rig file ([sim] faults), and run --ui, --resync or --reprovision on one station alone",
            file=sys.stderr,
        )
        return USAGE_EXIT
    try:
        stations = from_lab_file(args.lab) if args.lab else from_rig_files(args.rig)
    except LabError as e:
        for line in e.lines:
            print(f"paygo-bench: {line}", file=sys.stderr)
        print(f"paygo-bench: {BENCH_ERROR}: {len(e.lines)} error(s) above; no station started", file=sys.stderr)
        return EXIT_CODES[BENCH_ERROR]
    root = Path(args.report_dir) if args.report_dir else None
    try:  # the lab's own folder (lab.json, console logs); each station's run directory, new
        lab_dir = new_run_dir(root, reports_root(), "lab")
        run_dirs = [
            lab_dir / s.id if root is not None else new_run_dir(None, reports_root(), s.id, claim=False)
            for s in stations
        ]
    except RunDirInUse as e:
        print(f"paygo-bench run: error: {e}", file=sys.stderr)
        return USAGE_EXIT
    except RunDirError as e:
        print(f"paygo-bench: {BENCH_ERROR}: {e}", file=sys.stderr)
        return EXIT_CODES[BENCH_ERROR]
    return run_lab(stations, lab_dir, run_dirs, args.suite, args.operator or None, args.k, extra)


class SessionVerdict:
    """A pytest plugin that keeps the verdict the session judged (fixtures/record.py). The run's
    own verdict comes first: when the record could not be written (a full disk), the file holds
    the last state written whole, not the verdict."""

    judged: tuple[str, str] | None = None

    def pytest_unconfigure(self, config) -> None:  # registered first: called after the recorder's
        from bench.fixtures.keys import RECORDER_KEY

        recorder = config.stash.get(RECORDER_KEY, None)
        if recorder is not None and recorder.verdict is not None:
            self.judged = (recorder.verdict.verdict, recorder.verdict_line())


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def run_verdict(record_path: Path, code: int, stale: bool = False) -> tuple[str, str]:
    """The verdict of the run and its line, from its record; without one (pytest did not start
    the session, or left no verdict) the bench could not judge the device: BENCH ERROR, or
    INCOMPLETE when it was interrupted before it began."""
    from bench.record.model import one_line
    from bench.record.verdict import BENCH_ERROR, INCOMPLETE, VERDICTS

    try:
        if stale:
            raise ValueError("not written by this run")
        doc = json.loads(record_path.read_text(encoding="utf-8"))
        verdict, reason = doc["verdict"], doc["verdict_reason"]
        if verdict not in VERDICTS or not isinstance(reason, str):
            raise ValueError(f"no verdict (status {doc.get('status')!r})")
        if doc.get("exit_status") != code:  # the record's last write did not reach the disk
            raise ValueError(f"it says {verdict} (exit status {doc.get('exit_status')}), pytest ended with {code}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        if code == 2:
            return INCOMPLETE, f"{INCOMPLETE}: interrupted before the run began (no record: {one_line(str(e))})"
        return BENCH_ERROR, (
            f"{BENCH_ERROR}: the run left no verdict in {record_path} "
            f"({one_line(str(e))}; pytest exit status {code}: see its output above)"
        )
    return verdict, f"{verdict}: {one_line(reason)}"


def supply_line(record_path: Path, stale: bool = False) -> str:
    """Where the run left the supply, as its record says (docs/record.md, safe_state): the line
    an operator reads before walking away from the bench."""
    from bench.record.model import safe_state_line

    try:
        if stale:
            raise ValueError("not written by this run")
        safe = json.loads(record_path.read_text(encoding="utf-8")).get("safe_state")
        if safe is None:
            return "supply not switched by this run (no test opened the PSU)"
        return safe_state_line(str(safe["wanted"]), safe["confirmed"], str(safe["detail"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "supply state not known (no record from this run): check the PSU's output"


def cmd_check(args: argparse.Namespace, extra: list[str]) -> int:
    from bench.record.verdict import BENCH_ERROR
    from bench.rig import RIG_ENV_VAR, RigError, resolve_rig
    from bench.station.check import Finding, check_instruments, rig_file_errors

    chosen = args.rig or os.environ.get(RIG_ENV_VAR) or None
    if chosen:
        errors = rig_file_errors(Path(chosen))
        for line in errors:
            print(f"paygo-bench check: {line}")
        if errors:
            print(f"paygo-bench check: {BENCH_ERROR}: {len(errors)} error(s) in {chosen}")
            return EXIT_CODES[BENCH_ERROR]
        print(f"paygo-bench check: rig file {chosen}: OK")
    try:
        rig = resolve_rig(chosen)
    except RigError as e:  # not reached: the file's errors were listed above
        print(f"paygo-bench check: {BENCH_ERROR}: {e}")
        return EXIT_CODES[BENCH_ERROR]

    def say(finding: Finding) -> None:
        print(f"paygo-bench check: {'ok' if finding.ok else 'FAILED'}: {finding.text}", flush=True)

    if check_instruments(rig, say):
        print(f"paygo-bench check: station {rig.station.id} is ready")
        return 0
    print(f"paygo-bench check: {BENCH_ERROR}: station {rig.station.id} is not ready (above)")
    return EXIT_CODES[BENCH_ERROR]


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
    from bench.server.workers import resolve as resolve_workers
    from bench.server.workers import start_workers

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
            base_path=args.base_path,
            auth=args.auth,
            jwt_secret=secret,
            announce_base_url=args.announce_base_url,
            tokens_as_strings=args.tokens_as_strings,
            cert_file=Path(args.cert) if args.cert else None,
            key_file=Path(args.key) if args.key else None,
        )
    except (RigError, DeviceFileError, ValueError, OSError) as e:
        print(f"paygo-bench serve: {e}", file=sys.stderr)
        return 2
    if not is_loopback(args.host) and secret is None:
        # without a JWT secret GET /device_data and POST /data_format are open: fine on loopback,
        # not to a whole lab network
        if not args.insecure_open_to_network:
            print(
                f"paygo-bench serve: error: --host {args.host} is reachable from other machines and no "
                "--jwt-secret-file is given, so every device's data (GET /device_data) and POST /data_format "
                "would be open to them: give --jwt-secret-file, or --insecure-open-to-network to serve them open",
                file=sys.stderr,
            )
            return USAGE_EXIT
        logging.getLogger("bench.server").warning(
            "INSECURE: --insecure-open-to-network: listening on %s without a JWT secret: anyone who can reach "
            "this machine can read every device's data (GET /device_data) and register data formats",
            args.host,
        )
    try:
        workers, why = resolve_workers(args.workers, tls=config.cert_file is not None)
    except ValueError as e:
        args.command_parser.error(str(e))
    if why is not None and args.workers is not None:
        print(f"paygo-bench serve: warning: --workers {args.workers}: {why}", file=sys.stderr)
    store = Store(args.db)
    registry = DeviceRegistry(devices, store)
    if workers > 1:
        # each worker opens its own store; none may inherit this connection (SQLite and fork)
        store.close()

        def make_app() -> tuple:
            own = Store(args.db)
            return create_app(config, own, DeviceRegistry(devices, own)), own.close

        return _serve_workers(
            args,
            config,
            start_workers(make_app, args.host, args.port, workers=workers, base_path=config.base_path),
            len(registry),
        )
    server = start(
        create_app(config, store, registry),
        args.host,
        args.port,
        base_path=config.base_path,
        cert_file=config.cert_file,
        key_file=config.key_file,
    )
    page = _say_serving(
        args, server.base_url, f"db {args.db}, {len(registry)} device(s), auth {config.auth}, 1 process", secret
    )
    if page is False:
        server.stop()
        store.close()
        return 2
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if page is not None:
            page.stop()
        server.stop()
        store.close()
    return 0


def _serve_workers(args: argparse.Namespace, config: Any, pool: Any, devices: int) -> int:
    """`serve --workers N` (N > 1): wait until Ctrl-C or SIGTERM (every worker stopped cleanly,
    exit 0) or until a worker ends on its own (one line naming it, the others stopped, exit 3)."""
    import signal

    from bench.record.verdict import BENCH_ERROR

    def terminate(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    page = _say_serving(
        args,
        pool.base_url,
        f"db {args.db}, {devices} device(s), auth {config.auth}, "
        f"{len(pool.pids)} worker processes: pids {' '.join(map(str, pool.pids))}",
        config.jwt_secret,
    )
    if page is False:
        pool.stop()
        return 2
    ended = None
    try:
        ended = pool.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if page is not None:
            page.stop()
        pool.stop()
    if ended is not None:
        print(
            f"paygo-bench serve: {BENCH_ERROR}: {ended}; the server stopped (docs/server.md, Workers)", file=sys.stderr
        )
        return EXIT_CODES[BENCH_ERROR]
    return 0


def _say_serving(args: argparse.Namespace, base_url: str, detail: str, jwt_secret: Any) -> Any:
    """`serve`'s start lines, and its devices page when --ui-port asks: the page, None without
    one, False when it could not listen (said on stderr)."""
    from bench.server.serve import is_loopback

    if not is_loopback(args.host) and jwt_secret is not None:
        print(f"paygo-bench serve: WARNING: listening on {args.host}, reachable from other machines", file=sys.stderr)
    print(f"paygo-bench: Metrics server on {base_url}/ ({detail}); Ctrl-C stops it", flush=True)
    if args.ui_port is None:
        return None
    page = _devices_page(args, base_url)
    return page if page is not None else False


def _devices_page(args: argparse.Namespace, base_url: str) -> Any:
    """The devices page (`--ui-port`) on 127.0.0.1, or None (said why) if it cannot listen."""
    from bench.live.metrics_view import device_summaries
    from bench.live.page import create_page_app
    from bench.live.state import LiveState
    from bench.server.serve import start

    db = Path(args.db)
    state = LiveState(station="Metrics server", rig=base_url, suite="-", serving=True)
    state.metrics = lambda: device_summaries(db)
    try:  # the page lists every device's data: this machine only
        page = start(create_page_app(state.snapshot), "127.0.0.1", args.ui_port, threads=2)
    except OSError as e:
        print(f"paygo-bench serve: the page cannot listen on 127.0.0.1:{args.ui_port}: {e}", file=sys.stderr)
        return None
    print(f"paygo-bench: devices page on {page.url}/", flush=True)
    return page


def _exit_4_on_usage_error(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """argparse exits 2 on a usage error; for paygo-bench and its run command 2 is the INCOMPLETE
    verdict, so their usage errors exit 4."""

    def error(message: str):
        parser.print_usage(sys.stderr)
        parser.exit(USAGE_EXIT, f"{parser.prog}: error: {message}\n")

    parser.error = error  # type: ignore[method-assign]
    return parser


def build_parser() -> argparse.ArgumentParser:
    from bench.detection.command import add_parser as add_selftest_parser
    from bench.history.command import add_parser as add_history_parser
    from bench.station.command import add_parser as add_ledger_parser

    parser = _exit_4_on_usage_error(
        argparse.ArgumentParser(
            prog="paygo-bench", description="Hardware-in-the-loop test bench for OpenPAYGO devices."
        )
    )
    from bench.version import bench_version

    parser.add_argument("--version", action="version", version=f"paygo-bench {bench_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_run_parser,
        _add_sim_parser,
        _add_check_parser,
        _add_serve_parser,
        add_history_parser,
        add_selftest_parser,
        add_ledger_parser,
    ):
        add(sub)
    for command in sub.choices.values():  # for an unrecognised argument, each command's own usage error
        command.set_defaults(command_parser=command)
    return parser


def _add_run_parser(sub) -> None:
    from bench.suites import profile_names

    run = _exit_4_on_usage_error(
        sub.add_parser(
            "run",
            help="run the device suite, write reports/<run-id>/, and say PASSED, FAILED, INCOMPLETE or BENCH ERROR",
            epilog=RUN_EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    run.add_argument(
        "--rig",
        action="append",
        default=[],
        help="rig file (TOML); default $PAYGO_BENCH_RIG, else the virtual rig; repeated: one station each, "
        "all run at once (docs/lab.md)",
    )
    run.add_argument(
        "--lab", metavar="FILE", help="lab file (TOML): its [[station]]s run at once, each its own run (docs/lab.md)"
    )
    run.add_argument("--operator", default="", help="operator name for the record")
    run.add_argument(
        "--suite",
        choices=profile_names(),
        default=None,
        help="the suite profile (bench/suites, docs/tests.md): which device tests run and which must "
        "pass for PASSED; default: the rig's dut.suite, else full. quick: the tests marked quick; "
        "full: every device test; soak: every test with 10x the power cuts and drift observation; "
        "token: OpenPAYGO Token certification",
    )
    run.add_argument("-k", help="only tests matching this pytest -k expression")
    run.add_argument(
        "--report-dir",
        help="write here instead of a new reports/<run-id>/: a new or empty directory (one holding "
        "files, another run's, is refused)",
    )
    run.add_argument(
        "--sim-fault",
        action="append",
        default=[],
        metavar="NAME",
        help="switch on a simulator defect (virtual rig only; repeatable)",
    )
    run.add_argument(
        "--resync",
        action="store_true",
        help="at bring-up, bring a DUT that reports more than its device ledger holds back to a known "
        "state with a counter-sync and a SET token (docs/ledger.md)",
    )
    run.add_argument(
        "--reprovision",
        action="store_true",
        help="at bring-up, provision a blank DUT its ledger knows (reflashed or erased): a new ledger epoch",
    )
    run.add_argument(
        "--ui",
        action="store_true",
        help="serve the live station page during the run (the test running, measurements, the PSU, the "
        "serial lines with secrets masked, the verdict) on the rig's station.ui_host (default 127.0.0.1)",
    )
    run.add_argument("--ui-port", type=int, default=8765, help="the live page's TCP port (0 = any free; default 8765)")
    run.add_argument(
        "--ui-hold",
        type=float,
        default=3.0,
        help="seconds the live page stays up after the verdict, so an open page shows it (default 3)",
    )
    run.set_defaults(func=cmd_run)


def _add_check_parser(sub) -> None:
    check = _exit_4_on_usage_error(
        sub.add_parser(
            "check",
            help="check a station without running a test: every rig file error, then PSU, serial port and DUT",
            epilog=CHECK_EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    check.add_argument("--rig", help="rig file (TOML); default $PAYGO_BENCH_RIG, else the virtual rig")
    check.set_defaults(func=cmd_check)


def _add_sim_parser(sub) -> None:
    sim = sub.add_parser(
        "sim",
        help="start the virtual rig and leave it running for a person to poke",
        epilog=SIM_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("--fault", action="append", default=[], metavar="NAME", help="switch on a defect (repeatable)")
    sim.add_argument("--drift-ppm", type=float, default=0.0, help="RTC drift in ppm")
    sim.add_argument("--link", choices=("auto", "pty", "socket"), default="auto")
    sim.set_defaults(func=cmd_sim)


def _add_serve_parser(sub) -> None:
    serve = _exit_4_on_usage_error(
        sub.add_parser(
            "serve",
            help="run the OpenPAYGO Metrics server (docs/server.md) until Ctrl-C",
            epilog=SERVE_EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default loopback only); any other needs --jwt-secret-file "
        "(or --insecure-open-to-network)",
    )
    serve.add_argument("--port", type=int, default=8080, help="TCP port (0 = any free port; default 8080)")
    serve.add_argument("--db", required=True, help="SQLite file storing every request (created if absent)")
    serve.add_argument(
        "--devices", help="device file: .toml, .json or an OpenPAYGO device-list .csv (default: the rig's DUT)"
    )
    serve.add_argument("--rig", help="rig file whose DUT is served when --devices is not given")
    serve.add_argument("--jwt-secret-file", help="file holding the HS256 secret for Authorization: JWT")
    serve.add_argument(
        "--auth",
        choices=("payload", "jwt", "either", "none"),
        default="payload",
        help="authentication a device-data POST needs (default payload)",
    )
    serve.add_argument("--base-path", default="/", help="URL path the routes live under (default /)")
    serve.add_argument("--announce-base-url", help="send settings.base_url in every reply (server migration)")
    serve.add_argument("--tokens-as-strings", action="store_true", help="tkl items as zero-padded strings")
    serve.add_argument(
        "--ui-port",
        type=int,
        default=None,
        help="also serve a page of each device's captured requests and the tokens served, on 127.0.0.1:PORT",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="server processes sharing the port (default 1; Linux only: elsewhere and over HTTPS 1)",
    )
    serve.add_argument("--cert", help="TLS certificate (PEM): serve HTTPS")
    serve.add_argument("--key", help="TLS private key (PEM)")
    serve.add_argument(
        "--insecure-open-to-network",
        action="store_true",
        help="allow a non-loopback --host without --jwt-secret-file: every device's data and POST "
        "/data_format open to anyone who can reach the machine (logged as a warning)",
    )
    serve.set_defaults(func=cmd_serve)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning meant for the operator (a shared key file) in one line, without Python's
    file-and-line prefix."""
    print(f"paygo-bench: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.showwarning = _show_warning
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # everything after -- goes to pytest untouched
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args.func(args, extra)


if __name__ == "__main__":
    sys.exit(main())
