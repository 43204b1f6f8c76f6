"""Entry point of ``make bench``: prepare a clean database, then run every bench/bench_*.py.

Each benchmark module exposes ``main() -> list[str]``: it prints its results
table and returns the targets it missed (empty list = all met). This script
exits 1 if any target was missed or a benchmark crashed.

Database: with ``DATABASE_URL`` unset, a dedicated PostgreSQL database
``etl_monitor_bench`` on 127.0.0.1 is dropped and re-created for every run (the
benchmarks need PostgreSQL and a clean registry). With ``DATABASE_URL`` set, that
database is used as-is (it must hold no loaders yet). Override the default
server with ``BENCH_PG_HOST``/``BENCH_PG_PORT``/``BENCH_PG_USER``/``BENCH_PG_DB``.

Run one benchmark only: ``.venv/bin/python bench/run.py loader_list``.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent


def _default_database_url() -> str:
    """Drop and re-create the dedicated benchmark database; return its URL."""
    import psycopg
    from psycopg import sql

    host = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
    port = os.environ.get("BENCH_PG_PORT", "5432")
    user = os.environ.get("BENCH_PG_USER", "postgres")
    name = os.environ.get("BENCH_PG_DB", "etl_monitor_bench")
    with psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"postgres://{user}@{host}:{port}/{name}"


def _configure_environment() -> None:
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = _default_database_url()
        print(f"bench: fresh database {os.environ['DATABASE_URL']}")
    else:
        print("bench: using DATABASE_URL from the environment")
    os.environ["DEBUG"] = "true"
    from common import FIELD_ENCRYPTION_KEY  # bench/ is on sys.path (main)

    os.environ.setdefault("FIELD_ENCRYPTION_KEY", FIELD_ENCRYPTION_KEY)
    os.environ.setdefault("ETL_MONITOR_VAR_DIR", tempfile.mkdtemp(prefix="etl-monitor-bench-"))
    # django.test.Client sends Host: testserver.
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "etl_monitor.settings")


def _discover(only: list[str]) -> list[str]:
    names = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    if only:
        wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in only}
        unknown = wanted - set(names)
        if unknown:
            raise SystemExit(f"bench: unknown benchmark(s): {', '.join(sorted(unknown))} (have: {', '.join(names)})")
        names = [n for n in names if n in wanted]
    return names


def main(argv: list[str]) -> int:
    sys.path[:0] = [str(PROJECT_DIR), str(BENCH_DIR)]
    os.chdir(PROJECT_DIR)
    names = _discover(argv)
    _configure_environment()

    import django

    django.setup()

    from django.conf import settings
    from django.core.management import call_command

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        print("bench: the benchmarks need PostgreSQL (DATABASE_URL=postgres://…)", file=sys.stderr)
        return 2

    started = time.perf_counter()
    call_command("migrate", interactive=False, verbosity=0)
    print(f"bench: migrations applied in {time.perf_counter() - started:.1f} s")

    failures: list[str] = []
    for name in names:
        print(f"\n=== {name} ===")
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(name)
            missed = module.main() or []
        except Exception:  # noqa: BLE001 - a crashing benchmark is a failed benchmark, the others still run
            traceback.print_exc()
            missed = [f"{name}: crashed"]
        failures.extend(missed)
        print(f"--- {name}: {time.perf_counter() - t0:.1f} s, {'FAIL' if missed else 'ok'}")

    print(f"\nbench: total {time.perf_counter() - started:.1f} s")
    if failures:
        print("bench: targets missed:", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    print("bench: all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
