"""A Celery worker keeps consuming when Redis restarts under it while it holds messages.

Celery 5.7.0 closes a lost broker connection a second time after ``collect()`` has detached its
transport; a channel still holding unacknowledged messages then fails with an AttributeError and
the worker exits ("Unrecoverable error"). etl_monitor/broker.py's transport leaves those messages
to Redis's visibility timeout instead. These tests run on redis-servers of their own.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from kombu import Connection, Exchange, Queue

from tests.processes import RedisServer, celery_worker, process_start, process_stop

pytestmark = pytest.mark.services

PATCHED = "etl_monitor.broker:Transport"
RESTARTS = 6


def message_taken(conn: Connection, queue: Queue) -> object:
    """Publish one message to ``queue`` and take it without acknowledging it (as a worker with
    acks_late holds a task while it runs)."""
    conn.Producer().publish({"job": 1}, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue])
    message = conn.default_channel.basic_get(queue.name, no_ack=False)
    assert message is not None
    return message


def test_the_stock_redis_transport_fails_on_a_connection_celery_5_7_closed_twice(own_redis: RedisServer):
    """Why etl_monitor/broker.py exists: if this stops failing, kombu fixed it and that module can go."""
    queue = Queue("stock", Exchange("stock"), "stock")
    conn = Connection(own_redis.url)
    held = message_taken(conn, queue)
    conn.transport.client = None  # what Connection.collect() leaves: the transport detached
    with pytest.raises(AttributeError, match="hostname"):
        conn.default_channel.close()
    with pytest.raises(AttributeError, match="hostname"):
        held.ack()  # the task that held it finishes afterwards


def test_a_closed_connection_leaves_held_messages_to_the_visibility_timeout(own_redis: RedisServer):
    queue = Queue("held", Exchange("held"), "held")
    conn = Connection(own_redis.url, transport=PATCHED, transport_options={"visibility_timeout": 1})
    held = message_taken(conn, queue)
    conn.transport.client = None
    conn.default_channel.close()  # no error: the message stays in Redis's unacked set
    # What Celery logs as "Couldn't ack" and goes on (kombu's Message.ack_log_error catches the
    # connection's errors), instead of an AttributeError that ends the worker.
    with pytest.raises(conn.connection_errors, match="closed"):
        held.ack()

    with Connection(own_redis.url, transport=PATCHED, transport_options={"visibility_timeout": 1}) as other:
        assert other.default_channel.basic_get(queue.name) is None  # not back yet: still held
        time.sleep(1.2)
        other.default_channel.qos.restore_visible()
        again = other.default_channel.basic_get(queue.name, no_ack=True)
        assert again is not None and again.payload == {"job": 1}


@pytest.fixture
def worker_on(own_redis: RedisServer, tmp_path: Path) -> Iterator[tuple[object, Path]]:
    """A Celery worker (two processes, acks_late as configured) whose broker and cache are
    ``own_redis``; its output in a log file."""
    log = tmp_path / "worker.log"
    env = {**os.environ, "REDIS_URL": own_redis.url}
    env.pop("CELERY_BROKER_URL", None)
    proc = process_start(celery_worker("--loglevel", "INFO", concurrency=2), env=env, log=log)
    try:
        yield proc, log
    finally:
        process_stop(proc)


def task_done(log: Path, task_id: str) -> bool:
    return any(task_id in line and "succeeded" in line for line in log.read_text(errors="replace").splitlines())


def wait_for(what: str, condition, proc, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    pytest.fail(f"{what}: not within {timeout:.0f}s (worker exit code {proc.poll()}); its log ends:\n{tail}")


def test_the_worker_goes_on_consuming_after_redis_restarts_while_it_holds_tasks(own_redis: RedisServer, worker_on):
    """Redis stopped in the middle of a burst of tasks, again and again (without the patched
    transport the worker exited within a few restarts): each time it is back, the worker runs the
    next task it is sent, without being restarted."""
    proc, log = worker_on
    sender = Celery(broker=own_redis.url)
    first = sender.send_task("etl_monitor.tasks.platform_heartbeat")
    wait_for("the worker to run its first task", lambda: task_done(log, first.id), proc, log, timeout=90)

    for _ in range(RESTARTS):
        for _ in range(200):
            sender.send_task("etl_monitor.tasks.platform_heartbeat")
        time.sleep(0.1)  # the worker is in the middle of them
        own_redis.stop()
        own_redis.start()
        sender = Celery(broker=own_redis.url)
        marker = str(uuid.uuid4())
        sender.send_task("etl_monitor.tasks.platform_heartbeat", task_id=marker)
        wait_for("the worker to run a task sent after Redis restarted", lambda m=marker: task_done(log, m), proc, log)
        assert proc.poll() is None
    assert "Unrecoverable error" not in log.read_text(errors="replace")
