"""Cron pings against the running platform: every form opens and closes runs that the API reads back.

These are the requests a shell script sends (``curl https://…/ping/<key>/<code>/start``): no
session, no token header, the ping key in the path. On PostgreSQL, outside any test transaction,
every finishing form must record the run (it once answered 500: select_for_update outside a
transaction)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.e2e.harness import HTTP_TIMEOUT, Platform

pytestmark = pytest.mark.services
_codes = itertools.count(1)


@dataclass
class Pinger:
    platform: Platform
    code: str
    key: str

    def ping(self, suffix: str = "", *, body: str | None = None, rid: str = "") -> requests.Response:
        url = self.platform.url(f"/ping/{self.key}/{self.code}{suffix}")
        params = {"rid": rid} if rid else None
        if body is None:
            return requests.get(url, params=params, timeout=HTTP_TIMEOUT)
        return requests.post(url, params=params, data=body.encode(), timeout=HTTP_TIMEOUT)

    def run_of(self, answer: requests.Response) -> dict[str, Any]:
        """The run a ping answered about (``OK <run_id> <status>``), read back through the API."""
        assert answer.status_code == 200, f"{answer.request.method} {answer.request.path_url}: {answer.status_code}"
        ok, run_id, status = answer.text.split()
        assert ok == "OK"
        run = self.platform.get("Viewer", f"/api/v1/runs/{run_id}/")
        assert run.status_code == 200, run.text
        assert run.json()["status"] == status
        return run.json()


@pytest.fixture
def pinger(platform: Platform) -> Pinger:
    code = platform.loader_create(f"E2E-PING-{next(_codes)}")
    return Pinger(platform, code, platform.token_create(code, kind="PING"))


def test_a_start_then_a_success_ping_close_one_run(pinger: Pinger):
    started = pinger.run_of(pinger.ping("/start"))
    finished = pinger.run_of(pinger.ping())

    assert started["status"] == "RUNNING" and started["source"] == "PING"
    assert finished["run_id"] == started["run_id"]
    assert finished["status"] == "SUCCEEDED" and finished["exit_status"] == 0
    assert finished["finished_at"] and finished["loader_code"] == pinger.code


def test_a_fail_ping_with_output_records_a_failed_run_with_that_output(pinger: Pinger):
    started = pinger.run_of(pinger.ping("/start"))
    failed = pinger.run_of(pinger.ping("/fail", body="ORA-01017: invalid username/password\n"))

    assert failed["run_id"] == started["run_id"]
    assert failed["status"] == "FAILED"
    assert "ORA-01017" in failed["error_text"] and "ORA-01017" in failed["log_excerpt"]


@pytest.mark.parametrize(("exit_status", "status"), [("0", "SUCCEEDED"), ("1", "FAILED"), ("255", "FAILED")])
def test_an_exit_status_ping_without_a_start_records_a_finished_run(pinger: Pinger, exit_status: str, status: str):
    run = pinger.run_of(pinger.ping(f"/{exit_status}"))

    assert run["status"] == status
    assert run["exit_status"] == int(exit_status)
    assert run["started_at"] and run["finished_at"]


def test_rid_keeps_overlapping_runs_apart_and_a_retried_finish_changes_nothing(pinger: Pinger):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert pinger.run_of(pinger.ping("/start", rid=first))["run_id"] == first
    assert pinger.run_of(pinger.ping("/start", rid=second))["run_id"] == second

    done = pinger.run_of(pinger.ping("/0", rid=first))
    still = pinger.platform.get("Viewer", f"/api/v1/runs/{second}/").json()
    failed = pinger.run_of(pinger.ping("/fail", rid=second))
    retried = pinger.run_of(pinger.ping("/0", rid=first))

    assert (done["run_id"], done["status"]) == (first, "SUCCEEDED")
    assert still["status"] == "RUNNING"
    assert (failed["run_id"], failed["status"]) == (second, "FAILED")
    assert retried == done


def test_a_ping_with_an_unknown_key_or_exit_status_is_refused(pinger: Pinger):
    unknown_status = pinger.ping("/256")
    unknown_key = requests.get(pinger.platform.url(f"/ping/not-a-key/{pinger.code}"), timeout=HTTP_TIMEOUT)
    bad_rid = pinger.ping("/start", rid="not-a-uuid")

    assert unknown_status.status_code == 400 and "exit status" in unknown_status.text
    assert unknown_key.status_code == 404
    assert bad_rid.status_code == 400 and "rid" in bad_rid.text
