"""A throwaway PostgreSQL server for the history self-tests: Debian's binaries
(/usr/lib/postgresql/<major>/bin, the `postgresql` package .ci/run installs), a cluster made with
initdb in a temporary folder, listening on a free loopback port only, with a password (so the
tests see that it is never shown), stopped and removed at the end of the session.

$PAYGO_BENCH_TEST_PG_URL names a server to use instead. Without either, `why_not` says why, and
the PostgreSQL cases are skipped saying so (never counted as passed)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

TEST_PG_URL_ENV = "PAYGO_BENCH_TEST_PG_URL"
USER, PASSWORD = "bench", "pg-Pw-7f3c9a41"  # a test cluster's, on loopback, gone at the end
START_TIMEOUT_S = 60.0


def binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self) -> None:
        self.url: str | None = None
        self.why_not: str | None = None
        self._dir: Path | None = None
        self._data: Path | None = None
        self._run_as: list[str] = []
        self._bin: Path | None = None

    def start(self) -> Server:
        if os.environ.get(TEST_PG_URL_ENV):
            self.url = os.environ[TEST_PG_URL_ENV]
            return self
        self._bin = binaries()
        if self._bin is None:
            self.why_not = "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin; apt-get install postgresql)"
            return self
        self._dir = Path(tempfile.mkdtemp(prefix="paygo-pg-"))
        owner = None
        if os.geteuid() == 0:  # postgres refuses to run as root: as the package's user
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                self.why_not = "running as root and there is no postgres user to run the server as"
                return self
            self._run_as = ["runuser", "-u", "postgres", "--"]
            os.chown(self._dir, owner.pw_uid, owner.pw_gid)
        self._data = self._dir / "data"
        pwfile = self._dir / "pw"
        pwfile.write_text(PASSWORD + "\n", encoding="utf-8")
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        port = _free_port()
        steps = [
            [str(self._bin / "initdb"), "-D", str(self._data), "-U", USER, f"--pwfile={pwfile}"]
            + ["--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            [str(self._bin / "pg_ctl"), "-D", str(self._data), "-w", "-t", str(int(START_TIMEOUT_S))]
            + ["-l", str(self._dir / "server.log"), "-o"]
            + [f"-k {self._dir} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
        ]
        for step in steps:
            proc = subprocess.run(self._run_as + step, capture_output=True, text=True, timeout=START_TIMEOUT_S)
            if proc.returncode != 0:
                log = self._dir / "server.log"
                tail = log.read_text(errors="replace")[-500:] if log.is_file() else ""
                self.why_not = f"{Path(step[0]).name} failed: {(proc.stderr or proc.stdout)[-500:]} {tail}".strip()
                self.stop()
                return self
        self.url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres"
        return self

    def stop(self) -> None:
        if self._data is not None and (self._data / "postmaster.pid").exists() and self._bin is not None:
            subprocess.run(
                self._run_as + [str(self._bin / "pg_ctl"), "-D", str(self._data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=START_TIMEOUT_S,
            )
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def fresh_database(self) -> str:
        """A new, empty database on the server: each test starts from nothing."""
        import sqlalchemy as sa

        from bench.history.db import sqlalchemy_url

        assert self.url is not None
        name = f"t{time.time_ns()}"
        engine = sa.create_engine(sqlalchemy_url(self.url), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as con:
                con.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url.rsplit("/", 1)[0] + f"/{name}"
