"""Scale-out on PostgreSQL + Redis: two gunicorn instances, three Celery workers and two beat
schedulers at once (the accident a production cluster must survive), under a bounded load of signal
batches, pings and failed runs sent to both web instances; midway the worker that is sending a Slack
message is SIGKILLed (its prefork child too) and a replacement started.

Afterwards: every accepted signal and ping stored exactly once (a unique marker in each), no 5xx,
one incident per failing loader and rule, one message per incident at the fake Slack and the SMTP
server, every rule's due time claimed once (the workers log each claim), and the killed worker's
leased deliveries sent after their lease expired (found at Slack, not posted again).

The platform is this module's own (not the suite's shared one): the process layout is the thing
under test. Its database is named ``etl_scale_…``; its Redis is a server of its own.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e import conftest as e2e
from tests.e2e.harness import HTTP_TIMEOUT, Platform, platform_for, redis_server_available, wait_until
from tests.net import free_port
from tests.processes import CELERY, GUNICORN, celery_worker, process_start, process_stop

pytestmark = pytest.mark.services

LOAD_SECONDS = 120  # the load's duration (the issue: at least two minutes)
KILL_AFTER_SECONDS = 40  # when the worker sending a Slack message is killed
LEASE_SECONDS = 8  # NOTIFY_LEASE_SECONDS: how long a killed worker's deliveries stay claimed
FAILING_LOADERS = 14  # each fails once during the load: one incident each
SIGNAL_LOADERS = 3
PING_LOADERS = 3
SIGNALS_PER_BATCH = 40
PAUSE_SECONDS = 0.25  # between one client thread's requests: a bounded load on two shared cores
CLAIM = re.compile(r"detection: claimed at (\S+) rule@due (.+)$", re.MULTILINE)
TICK_TASK = re.compile(r"Task incidents\.tasks\.rules_evaluate\[\S+\] received")
ONCALL = "oncall@scale.example"


@dataclass
class Sent:
    """What the load generator sent and how each request was answered."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter = field(default_factory=Counter)  # (kind, status) → requests
    errors: list[str] = field(default_factory=list)  # requests that got no answer
    signals_accepted: set[str] = field(default_factory=set)  # markers of signals answered 2xx
    signals_unknown: set[str] = field(default_factory=set)  # markers sent but not answered 2xx
    signals_keyed_twice: set[str] = field(default_factory=set)  # sent to both instances at once
    pings_accepted: set[str] = field(default_factory=set)  # rids whose start and finish were answered 2xx
    failed: dict[str, str] = field(default_factory=dict)  # failing loader code → run id
    halt: threading.Event = field(default_factory=threading.Event)  # the test failed meanwhile: stop

    def answer(self, kind: str, method: str, url: str, **kwargs: Any) -> requests.Response | None:
        """Send one request of the load (a fresh connection: a kept-alive one gunicorn dropped after
        its idle timeout answers "connection reset" to a write, which must not be resent)."""
        headers = {**kwargs.pop("headers", {}), "Connection": "close"}
        try:
            response = requests.request(method, url, headers=headers, timeout=HTTP_TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            with self.lock:
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}"[:300])
            return None
        with self.lock:
            self.statuses[(kind, response.status_code)] += 1
        return response


class ScalePlatform(Platform):
    """The harness's platform with the production layout scaled out (see the module docstring)."""

    bases: list[str]
    killed: dict[str, Any]

    def _environment(self) -> dict[str, str]:
        return {
            **super()._environment(),
            "NOTIFY_LEASE_SECONDS": str(LEASE_SECONDS),
            "JIRA_ENABLED": "false",  # two receivers are enough to count; Jira's own test is elsewhere
            "SIGNAL_INGEST_RATE": "1000000/min",  # the load, not the per-token limit, is under test
            # One task per due rule: the two schedulers' tasks for the same rule queue behind each other
            # and run one after the other — the double evaluation a claim must refuse.
            "DETECTION_BATCH_SIZE": "1",
            "WEB_CONCURRENCY": "1",
            "WEB_THREADS": "4",
        }

    def _processes_start(self) -> None:
        for name, base in zip(("web-a", "web-b"), self.bases, strict=True):
            port = base.rsplit(":", 1)[1]
            self.procs[name] = process_start(
                [GUNICORN, "etl_monitor.wsgi", "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
                env=self.env_for(name),
                log=self.log_path(name),
            )
        for number in (1, 2, 3):
            self.worker_start(f"worker-{number}")
        for name in ("beat-1", "beat-2"):
            schedule = str(self.workdir / f"{name}-schedule")
            self.procs[name] = process_start(
                [CELERY, "--app", "etl_monitor", "beat", "--loglevel", "INFO", "--schedule", schedule],
                env=self.env_for(name),
                log=self.log_path(name),
            )

    def _configure(self) -> None:
        super()._configure()
        self._routing_configure()

    def worker_start(self, name: str) -> None:
        self.procs[name] = process_start(
            celery_worker("--loglevel", "INFO", "--hostname", f"{name}@%h", concurrency=1),
            env=self.env_for(name),
            log=self.log_path(name),
        )

    def stop(self) -> None:
        for name in [n for n in self.procs if n.startswith(("beat", "worker", "web"))]:
            process_stop(self.procs.pop(name))
        super().stop()

    def _ready(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode} while starting")
        logs = self.logs()
        workers = [n for n in self.procs if n.startswith("worker")]
        if not all(re.search(rf"{n}@\S+ ready", logs.get(n, "")) for n in workers):
            return False
        if not all("beat: Starting" in logs.get(n, "") for n in ("beat-1", "beat-2")):
            return False
        return all(requests.get(f"{base}/readyz", timeout=5).status_code == 200 for base in self.bases)

    def _routing_configure(self) -> None:
        """Incidents of every severity go to email and Slack, with no escalation during the test."""
        rules = self.get("Admin", "/api/v1/notification-rules/", params={"page_size": 100}).json()["results"]
        for rule in rules:
            if rule["team"] is None and rule["tag"] is None:
                body = {
                    "channels": ["email", "slack"],
                    "recipients": [ONCALL],
                    "slack_channel": "#alerts-high",
                    "escalation_timeout": None,
                    "repeat_interval": None,
                }
                answer = self.patch("Admin", f"/api/v1/notification-rules/{rule['id']}/", body)
                assert answer.status_code == 200, answer.text

    # --- reading the database (the verification only; the load goes over HTTP) -------------------
    def query(self, sql: str, params: Any = None) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.database_url.replace("postgres://", "postgresql://", 1)) as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def cluster() -> Any:
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://", "pgsql://")):
        e2e._service_unavailable("PostgreSQL (DATABASE_URL) for the scale-out test")
    if not redis_server_available():
        e2e._service_unavailable("The redis-server program for the scale-out test")
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="etl-monitor-scale-"))
    base = platform_for(workdir, database_url, name_prefix="etl_scale")
    platform = ScalePlatform(**{name: getattr(base, name) for name in base.__dataclass_fields__})
    platform.bases = [base.base, f"http://127.0.0.1:{free_port()}"]
    platform.killed = {}
    with e2e.platform_running(platform, "scale-out platform"):
        yield platform


# --- the load --------------------------------------------------------------------------------------


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _signals(platform: ScalePlatform, sent: Sent, codes: list[str], tokens: dict[str, str], stop: float, n: int):
    """Signal batches, alternating web instances; every fourth batch carries idempotency keys and is
    sent to both instances at the same moment (a client's retry racing the original)."""
    seq = 0
    while time.monotonic() < stop and not sent.halt.is_set():
        seq += 1
        code = codes[seq % len(codes)]
        keyed = seq % 4 == 0
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        markers = [f"scale-{n}-{seq}-{i}" for i in range(SIGNALS_PER_BATCH)]
        batch = []
        for i, marker in enumerate(markers):
            item = {"loader_code": code, "signal_key": "rows_written", "signal_value": i, "correlation_id": marker}
            item.update(validation_status="SUCCESS", metric_type="ROW_COUNT", captured_at=now)
            if keyed:
                item["idempotency_key"] = marker
            batch.append(item)
        targets = platform.bases if keyed else [platform.bases[seq % 2]]
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            calls = [
                pool.submit(
                    sent.answer, "signals", "POST", f"{base}/api/v1/signals/", json=batch, headers=_bearer(tokens[code])
                )
                for base in targets
            ]
            answers = [call.result() for call in calls]
        with sent.lock:
            if any(a is not None and 200 <= a.status_code < 300 for a in answers):
                sent.signals_accepted.update(markers)
            else:
                sent.signals_unknown.update(markers)
            if keyed:
                sent.signals_keyed_twice.update(markers)
        time.sleep(PAUSE_SECONDS)


def _pings(platform: ScalePlatform, sent: Sent, codes: list[str], keys: dict[str, str], stop: float):
    """start then finish (with ?rid=) on alternate instances; every third finish is sent to both
    instances at once."""
    seq = 0
    while time.monotonic() < stop and not sent.halt.is_set():
        seq += 1
        code, rid = codes[seq % len(codes)], str(uuid.uuid4())
        path = f"/ping/{keys[code]}/{code}"
        start = sent.answer("ping", "GET", f"{platform.bases[seq % 2]}{path}/start", params={"rid": rid})
        finishes = platform.bases if seq % 3 == 0 else [platform.bases[(seq + 1) % 2]]
        with ThreadPoolExecutor(max_workers=len(finishes)) as pool:
            calls = [
                pool.submit(sent.answer, "ping", "POST", f"{base}{path}", params={"rid": rid}, data=b"ok")
                for base in finishes
            ]
            answers = [call.result() for call in calls]
        finished = any(a is not None and a.status_code == 200 for a in answers)
        if start is not None and start.status_code == 200 and finished:
            with sent.lock:
                sent.pings_accepted.add(rid)
        time.sleep(PAUSE_SECONDS)


def _failures(platform: ScalePlatform, sent: Sent, codes: list[str], tokens: dict[str, str], began: float):
    """Each failing loader reports one failed run, spread over the load (start on one instance,
    the failure on the other); the one right after the kill is armed is the Slack post that hangs."""
    spacing = (LOAD_SECONDS - 15) / len(codes)
    for index, code in enumerate(codes):
        if sent.halt.wait(max(0.0, began + 2 + index * spacing - time.monotonic())):
            return
        run_id = str(uuid.uuid4())
        first, second = platform.bases[index % 2], platform.bases[(index + 1) % 2]
        body = {"loader_code": code, "run_id": run_id}
        started = sent.answer("runs", "POST", f"{first}/api/v1/runs/", json=body, headers=_bearer(tokens[code]))
        failure = {"status": "FAILED", "error_text": f"ORA-01555 snapshot too old ({code})"}
        url = f"{second}/api/v1/runs/{run_id}/"
        finished = sent.answer("runs", "PATCH", url, json=failure, headers=_bearer(tokens[code]))
        if started is not None and finished is not None and (started.status_code, finished.status_code) == (201, 200):
            with sent.lock:
                sent.failed[code] = run_id


def _socket_owners(port: int) -> set[int]:
    """Process ids holding an established TCP connection to 127.0.0.1:``port`` (from /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        remote, state, inode = parts[2], parts[3], parts[9]
        if state == "01" and int(remote.split(":")[1], 16) == port:
            inodes.add(f"socket:[{inode}]")
    owners = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                owners.add(int(pid))
        except OSError:
            continue
    return owners


def _kill_the_sending_worker(platform: ScalePlatform, began: float) -> None:
    """At KILL_AFTER_SECONDS, make the next Slack post hang (stored at Slack, never answered); find
    the worker whose process holds that connection, SIGKILL its whole process group (the Celery
    main process and its prefork child, mid-task) and start a replacement."""
    time.sleep(max(0.0, began + KILL_AFTER_SECONDS - time.monotonic()))
    release = threading.Event()
    posts_before = len(platform.slack.calls_to("chat.postMessage"))
    with platform.slack.lock:
        platform.slack.script.append(("hang", release))
    wait_until(
        lambda: len(platform.slack.calls_to("chat.postMessage")) > posts_before, "a Slack post to hang", timeout=40
    )
    port = platform.slack.server.server_address[1]
    workers = {name: proc for name, proc in platform.procs.items() if name.startswith("worker")}
    victim = wait_until(
        lambda: next((n for n, p in workers.items() if any(os.getpgid(o) == p.pid for o in _owners(port))), None),
        "the worker holding the hanging Slack connection",
        timeout=10,
        interval=0.1,
    )
    # The batch's other channel (email, sent beside it) is recorded as soon as it is done: the kill
    # lands while the worker waits on Slack alone.
    wait_until(
        lambda: (
            not platform.query(
                "SELECT d.id FROM integrations_delivery d JOIN integrations_channel c ON c.id = d.channel_id "
                "WHERE d.status = 'SENDING' AND c.kind <> 'SLACK'"
            )
        ),
        "the batch's email recorded",
        timeout=10,
        interval=0.1,
    )
    proc = platform.procs.pop(victim)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    wait_until(lambda: not _group_alive(proc.pid), f"{victim}'s prefork child to die with it", timeout=10)
    hung = platform.slack.calls_to("chat.postMessage")[posts_before]
    platform.killed = {"worker": victim, "at": time.time(), "delivery": hung.body.get("metadata")}
    platform.worker_start("worker-4")
    release.set()


def _group_alive(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that are still running (zombies waiting to be reaped are dead)."""
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(pid))
    return alive


def _owners(port: int) -> set[int]:
    owners = set()
    for pid in _socket_owners(port):
        try:
            os.getpgid(pid)
            owners.add(pid)
        except ProcessLookupError:
            continue
    return owners


def _claims(platform: ScalePlatform) -> tuple[Counter, list[str], dict[str, int]]:
    """What the workers logged of their claims: each (rule, due time) claimed, counted; the claims
    made before their due time (an evaluation of a rule that was no longer due); claims per worker."""
    claimed: Counter = Counter()
    early: list[str] = []
    per_worker: dict[str, int] = {}
    for name, text in platform.logs().items():
        if not name.startswith("worker"):
            continue
        lines = CLAIM.findall(text)
        per_worker[name] = len(lines)
        for at, rules in lines:
            for claim in rules.split():
                claimed[claim] += 1
                due = claim.split("@", 1)[1]
                if due != "first" and dt.datetime.fromisoformat(due) > dt.datetime.fromisoformat(at):
                    early.append(f"{claim} claimed at {at}")
    return claimed, early, per_worker


def _ticks(platform: ScalePlatform) -> dict[str, int]:
    return {
        name: platform.logs().get(name, "").count("Sending due task detection-tick") for name in ("beat-1", "beat-2")
    }


def test_two_web_three_workers_two_beats_under_load_lose_and_duplicate_nothing(cluster: ScalePlatform):
    platform = cluster
    failing = [platform.loader_create(f"SCALE-FAIL-{i:02d}") for i in range(FAILING_LOADERS)]
    signal_codes = [platform.loader_create(f"SCALE-SIG-{i}") for i in range(SIGNAL_LOADERS)]
    ping_codes = [platform.loader_create(f"SCALE-PING-{i}") for i in range(PING_LOADERS)]
    tokens = {code: platform.token_create(code) for code in [*failing, *signal_codes]}
    keys = {code: platform.token_create(code, kind="PING") for code in ping_codes}

    sent = Sent()
    began = time.monotonic()
    stop = began + LOAD_SECONDS
    threads = [threading.Thread(target=_signals, args=(platform, sent, signal_codes, tokens, stop, n)) for n in (1, 2)]
    threads.append(threading.Thread(target=_pings, args=(platform, sent, ping_codes, keys, stop)))
    threads.append(threading.Thread(target=_failures, args=(platform, sent, failing, tokens, began)))
    for thread in threads:
        thread.start()
    try:
        _kill_the_sending_worker(platform, began)
    except BaseException:
        sent.halt.set()
        raise
    finally:
        for thread in threads:
            thread.join(timeout=LOAD_SECONDS + 60)
    load_seconds = time.monotonic() - began

    # Drain: every failing loader's incident open, every delivery sent (the killed worker's too).
    def drained() -> bool:
        incidents = platform.query(
            "SELECT count(*) FROM incidents_incident i JOIN incidents_detectionrule r ON r.id = i.rule_id "
            "JOIN loaders_loader l ON l.id = i.loader_id "
            "WHERE r.kind = 'run_failed' AND l.loader_code LIKE 'SCALE-FAIL-%%'"
        )[0][0]
        unsent = platform.query("SELECT count(*) FROM integrations_delivery WHERE status <> 'SENT'")[0][0]
        return incidents >= len(sent.failed) and unsent == 0

    try:
        wait_until(drained, "every incident opened and every delivery sent", timeout=90, interval=1)
    finally:
        summary = _summary(platform, sent, load_seconds)
        print(summary)

    # No 5xx, no request without an answer.
    server_errors = {key: n for key, n in sent.statuses.items() if key[1] >= 500}
    assert not server_errors and not sent.errors, f"5xx {server_errors}, unanswered {sent.errors[:5]}\n{summary}"
    refused = {key: n for key, n in sent.statuses.items() if key[1] >= 300 and key[1] != 409}
    assert not refused, f"refused requests {refused}\n{summary}"

    # Every accepted signal stored exactly once (keyed ones sent twice included); none stored twice.
    stored = dict(
        platform.query(
            "SELECT correlation_id, count(*) FROM signals_app_signal WHERE correlation_id LIKE 'scale-%%' GROUP BY 1"
        )
    )
    missing = sorted(sent.signals_accepted - stored.keys())
    twice = sorted(marker for marker, n in stored.items() if n > 1)
    assert not missing and not twice, (
        f"{len(sent.signals_accepted)} signals accepted, {len(stored)} markers stored; missing {len(missing)} "
        f"{missing[:5]}, stored twice {len(twice)} {twice[:5]} (of which keyed and sent to both instances: "
        f"{len(set(twice) & sent.signals_keyed_twice)})\n{summary}"
    )
    assert len(sent.signals_accepted) >= 1000 and sent.signals_keyed_twice, summary

    # Every accepted ping pair is one run, succeeded (finishes sent to both instances included).
    runs = platform.query(
        "SELECT run_id::text, status, count(*) OVER (PARTITION BY run_id) FROM signals_app_run "
        "WHERE run_id = ANY(%s::uuid[])",
        [sorted(sent.pings_accepted)],
    )
    wrong = [(rid, status, n) for rid, status, n in runs if status != "SUCCEEDED" or n != 1]
    assert len(runs) == len(sent.pings_accepted) and not wrong, (
        f"{len(sent.pings_accepted)} ping runs accepted, {len(runs)} stored; wrong {wrong[:5]}\n{summary}"
    )

    # One incident per loader and rule; each failing loader's failed run opened exactly one.
    per_rule = platform.query(
        "SELECT l.loader_code, r.name, count(*) FROM incidents_incident i "
        "JOIN incidents_detectionrule r ON r.id = i.rule_id JOIN loaders_loader l ON l.id = i.loader_id "
        "WHERE l.loader_code LIKE 'SCALE-%%' GROUP BY 1, 2"
    )
    duplicated = [row for row in per_rule if row[2] != 1]
    run_failed = sorted(code for code, rule, _n in per_rule if rule == "Run failed")
    assert not duplicated and run_failed == sorted(sent.failed), (
        f"incidents per loader and rule {per_rule}; failed loaders {sorted(sent.failed)}\n{summary}"
    )
    assert len(sent.failed) == FAILING_LOADERS, summary

    # One message per incident at each receiver.
    incidents = dict(platform.query("SELECT id, loader_id FROM incidents_incident"))
    delivery_incident = dict(platform.query("SELECT id, incident_id FROM integrations_delivery"))
    slack_posts = Counter(
        delivery_incident.get(int(m["metadata"]["event_payload"]["delivery"]))
        for m in platform.slack.posts()
        if m.get("metadata")
    )
    emails = [m for m in platform.inbox.messages if ONCALL in m["To"]]
    email_copies = Counter(int(m["X-ETL-Monitor-Incident"]) for m in emails)
    assert all(n == 1 for n in slack_posts.values()) and set(slack_posts) == set(incidents), (
        f"Slack posts per incident {dict(slack_posts)}; incidents {sorted(incidents)}\n{summary}"
    )
    assert all(n == 1 for n in email_copies.values()) and set(email_copies) == set(incidents), (
        f"emails per incident {dict(email_copies)}; incidents {sorted(incidents)}\n{summary}"
    )

    # Every rule's due time claimed once, though both beats sent ticks.
    claimed, early, per_worker = _claims(platform)
    ticks = _ticks(platform)
    again = {claim: n for claim, n in claimed.items() if n > 1}
    assert all(n > 0 for n in ticks.values()), f"detection ticks per beat {ticks}"
    assert not again and not early, (
        f"due times claimed more than once {again}; rules evaluated before they were due {len(early)}: "
        f"{early[:5]}\n{summary}"
    )
    assert sum(per_worker.values()) >= 2 * len(ticks), summary

    # The killed worker's delivery: sent after its lease expired, found at Slack (not posted again).
    killed = platform.killed
    delivery = int(killed["delivery"]["event_payload"]["delivery"])
    [(status, attempts, started, sent_at, duplicate)] = platform.query(
        "SELECT status, attempts, extract(epoch FROM attempt_started_at), extract(epoch FROM sent_at), "
        "possible_duplicate FROM integrations_delivery WHERE id = %s",
        [delivery],
    )
    started, sent_at = float(started or 0), float(sent_at or 0)
    recovered = sent_at > killed["at"] and sent_at >= started + LEASE_SECONDS
    assert status == "SENT" and recovered and attempts == 1 and not duplicate, (
        f"the killed worker's delivery {delivery}: {status}, attempts {attempts}, possible duplicate {duplicate}, "
        f"sent {sent_at - killed['at']:.1f} s after the kill and {sent_at - started:.1f} s after its attempt "
        f"began (lease {LEASE_SECONDS} s)\n{summary}"
    )
    assert slack_posts[delivery_incident[delivery]] == 1, summary


def _summary(platform: ScalePlatform, sent: Sent, load_seconds: float) -> str:
    claimed, early, per_worker = _claims(platform)
    statuses = ", ".join(f"{kind} {status}: {n}" for (kind, status), n in sorted(sent.statuses.items()))
    deliveries = platform.query("SELECT status, count(*) FROM integrations_delivery GROUP BY 1 ORDER BY 1")
    tasks = sum(len(TICK_TASK.findall(text)) for name, text in platform.logs().items() if name.startswith("worker"))
    return (
        f"\nscale-out: load {load_seconds:.0f} s; answers {statuses}; unanswered {len(sent.errors)}\n"
        f"signals accepted {len(sent.signals_accepted)} "
        f"(keyed, sent to both instances {len(sent.signals_keyed_twice)}), unknown {len(sent.signals_unknown)}; "
        f"ping runs {len(sent.pings_accepted)}; failed runs {len(sent.failed)}\n"
        f"deliveries {deliveries}; Slack posts {len(platform.slack.posts())}; emails {platform.inbox.count}\n"
        f"detection ticks sent per beat {_ticks(platform)}; tick tasks received {tasks}; "
        f"claims per worker {per_worker}; distinct rule@due {len(claimed)}, claimed before due {len(early)}; "
        f"killed {platform.killed}"
    )
