"""``make run`` as a newcomer meets it: links point at the PORT it serves on, and the generated
admin password is repeated at the end of the start-up output, after the demo data and just
before the processes start logging. The commands run are stand-ins that say what they got."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FAKE_PYTHON = """#!/bin/sh
echo "python $* base_url=$ETL_MONITOR_BASE_URL"
case "$*" in
  *ensure_admin*) echo "Created admin user 'admin' with password: Fresh-Pw-123"
                  echo "This password is shown only once";;
  *"manage.py demo"*) i=0; while [ $i -lt 40 ]; do echo "demo line $i"; i=$((i+1)); done;;
esac
"""
FAKE_HONCHO = """#!/bin/sh
echo "honcho $* web_port=$WEB_PORT base_url=$ETL_MONITOR_BASE_URL"
"""


@pytest.fixture
def fake_venv(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("python", FAKE_PYTHON), ("honcho", FAKE_HONCHO)):
        script = bin_dir / name
        script.write_text(text)
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "venv" / ".installed-stamp").touch()  # newer than the requirements: no install
    return tmp_path / "venv"


def _make_run(venv: Path, **env: str) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if k != "ETL_MONITOR_BASE_URL"} | env
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "run", f"VENV={venv}", "PORT=9123"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def test_the_password_is_repeated_after_the_demo_data_before_the_processes_start(fake_venv):
    lines = _make_run(fake_venv)
    told = [i for i, line in enumerate(lines) if "with password: Fresh-Pw-123" in line]
    assert len(told) == 2
    last_demo = max(i for i, line in enumerate(lines) if line.startswith("demo line"))
    started = next(i for i, line in enumerate(lines) if line.startswith("honcho"))
    assert last_demo < told[1] < started


def test_links_point_at_the_port_when_no_base_url_is_set(fake_venv):
    lines = _make_run(fake_venv)
    assert all("base_url=http://127.0.0.1:9123" in line for line in lines if line.startswith(("python", "honcho")))
    assert "Links in notifications point at http://127.0.0.1:9123" in lines
    assert any("web_port=9123" in line for line in lines)


def test_a_base_url_that_is_set_is_kept(fake_venv):
    lines = _make_run(fake_venv, ETL_MONITOR_BASE_URL="https://etl.example.com")
    assert all("base_url=https://etl.example.com" in line for line in lines if line.startswith(("python", "honcho")))


def test_a_failing_step_stops_the_start(fake_venv):
    python = fake_venv / "bin" / "python"
    python.write_text('#!/bin/sh\ncase "$*" in *migrate*) echo "migration failed" >&2; exit 1;; esac\n')
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "run", f"VENV={fake_venv}", "PORT=9123"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "honcho" not in done.stdout
