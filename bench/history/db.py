"""Which results database a run writes to and `paygo-bench history` reads, and how it is named
in output: the password of its URL is never shown (docs/history.md, "The results database").

Order: `--db URL` (history only), else $PAYGO_BENCH_RESULTS_DB, else the rig file's
`[station] results_db`, else the embedded SQLite file reports/history.sqlite.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bench.secret import Secret, mask, url_password, url_shown

RESULTS_DB_ENV = "PAYGO_BENCH_RESULTS_DB"
SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")  # what a URL may start with
CONNECT_TIMEOUT_S = 5  # a lab server that does not answer: the run goes on and queues its record


class ResultsDbUrlError(ValueError):
    """Not a URL the bench can use; the message never holds the password."""


def url_scheme_ok(url: str) -> bool:
    return url.split("://", 1)[0] in SCHEMES and "://" in url


def sqlalchemy_url(url: str):
    """The SQLAlchemy URL: postgresql:// and postgres:// mean psycopg 3 (the one driver installed)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not url_scheme_ok(url):
        raise ResultsDbUrlError(f"{shown(url)}: expected sqlite:///FILE or postgresql://[USER@]HOST[:PORT]/DB")
    try:
        u = make_url(url)
    except ArgumentError:
        raise ResultsDbUrlError(f"{shown(url)}: not a database URL") from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def shown(url: str) -> str:
    """The URL as output may show it: the password replaced by ***."""
    return url_shown(url)


def scrub(text: str, url: str) -> str:
    """Error text made safe to print: the whole URL and its password masked, one line."""
    text = text.replace(url, shown(url))
    text = mask(text, [url_password(url)])
    return " ".join(text.split())


def local_url(reports: Path) -> str:
    return f"sqlite:///{reports.resolve() / 'history.sqlite'}"


def resolve(cli: str | None, rig_url: Secret | None, reports: Path, env: Mapping[str, str] | None = None) -> str:
    """The results database in force; the embedded SQLite under `reports` when none is named."""
    env = os.environ if env is None else env
    for url in (cli, env.get(RESULTS_DB_ENV) or None, rig_url.reveal() if rig_url else None):
        if url:
            return url
    return local_url(reports)


def is_local(url: str, reports: Path) -> bool:
    """The embedded default: a cache of this reports directory, kept equal to its records."""
    return url == local_url(reports)
