"""Run the built image as production would and check it (called by .ci/image).

Against this machine's PostgreSQL and Redis: migrations as a one-shot container, then web and
worker from the same image with a read-only root filesystem; the image's own HEALTHCHECK must
turn healthy, /healthz and /readyz must answer by the container's address, and the processes must
run as the image's numeric non-root user. Standard library only (runs before any venv exists).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from base64 import urlsafe_b64encode

PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
DATABASE = "etl_monitor_image_ci"


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)  # noqa: S603 (our own fixed commands)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fail(message: str, *containers: str) -> None:
    for name in containers:
        print(f"--- logs of {name}", file=sys.stderr)
        print(run(*PODMAN, "logs", name, check=False).stderr[-4000:], file=sys.stderr)
    sys.exit(f"image: {message}")


def main(image: str) -> None:
    facts = json.loads(run(*PODMAN, "image", "inspect", image).stdout)[0]
    config = facts["Config"]
    if config.get("User") != "10001:10001":
        fail(f"the image runs as {config.get('User')!r}, not the numeric non-root user 10001:10001")
    health = facts.get("Healthcheck") or config.get("Healthcheck") or {}
    if "deploy/healthcheck.py" not in " ".join(health.get("Test", [])):
        fail(f"the image has no HEALTHCHECK on /healthz: {health}")
    env_names = {entry.split("=", 1)[0] for entry in config.get("Env", [])}
    leaked = env_names & {"SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DATABASE_URL", "METRICS_TOKEN"}
    if leaked:
        fail(f"the image sets secrets in its environment: {sorted(leaked)}")

    run("psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {DATABASE}")
    run("psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {DATABASE}")
    port = free_port()
    env = {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        "REDIS_URL": "redis://127.0.0.1:6379/8",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": urlsafe_b64encode(os.urandom(32)).decode(),
        "ALLOWED_HOSTS": "etl-monitor.example.com",
        "WEB_PORT": str(port),
        "LOG_FORMAT": "json",
    }
    worker_port = free_port()
    env_args = [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]
    common = [*PODMAN, "run", "--network", "host", "--read-only", "--volume", "/var/lib/etl-monitor", "--tmpfs", "/tmp"]  # noqa: S108 (a tmpfs inside the container)
    names = ["etl-image-web", "etl-image-worker"]
    for name in names:
        run(*PODMAN, "rm", "--force", name, check=False)
    try:
        migrate = run(*common, "--rm", *env_args, image, "migrate", check=False)
        if migrate.returncode:
            fail(f"migrate exited {migrate.returncode}:\n{migrate.stdout[-2000:]}{migrate.stderr[-2000:]}")
        run(*common, "--detach", "--name", "etl-image-web", *env_args, image, "web")
        worker_env = ["--env", f"WORKER_METRICS_PORT={worker_port}", "--env", "WORKER_METRICS_ADDR=127.0.0.1"]
        worker = ["worker", "--concurrency", "1"]
        run(*common, "--detach", "--name", "etl-image-worker", *env_args, *worker_env, image, *worker)

        deadline = time.monotonic() + 60
        while True:
            state = run(*PODMAN, "healthcheck", "run", "etl-image-web", check=False)
            if state.returncode == 0:
                break
            if time.monotonic() > deadline:
                fail(f"the web container never turned healthy: {state.stdout}{state.stderr}", *names)
            time.sleep(1)
        print("image: web container healthy (its own HEALTHCHECK, /healthz inside the container)")

        # As a kubelet probe would: by address, with a Host that ALLOWED_HOSTS does not list.
        for path, expected in (("/healthz", "ok"), ("/readyz", "ready")):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                body = json.load(response)
            if body.get("status") != expected:
                fail(f"{path} answered {body}", *names)
        print("image: /healthz and /readyz answer by address (database and broker ok)")

        for name in names:
            uid = run(*PODMAN, "exec", name, "id", "-u").stdout.strip()
            if uid != "10001":
                fail(f"{name} runs as uid {uid}", *names)
            # PID 1 must still be the process the command asked for (nothing crashed and restarted).
            if run(*PODMAN, "inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
                fail(f"{name} is not running", *names)
        worker_ping = run(
            *PODMAN,
            "exec",
            "etl-image-worker",
            "celery",
            "--app",
            "etl_monitor",
            "inspect",
            "ping",
            "--timeout",
            "10",
            check=False,
        )
        if worker_ping.returncode or "pong" not in worker_ping.stdout:
            fail(f"the worker does not answer a ping: {worker_ping.stdout}{worker_ping.stderr}", *names)
        print("image: web and worker run as uid 10001 on a read-only root filesystem; the worker answers")

        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{worker_port}/metrics", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    fail("the worker's metrics endpoint (WORKER_METRICS_PORT) never answered", *names)
                time.sleep(1)
        print("image: the worker serves its own /metrics")

        # Probes are not logged (ProbeMiddleware answers them first); a page request is, with its id.
        page = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        page.request("GET", "/admin/login/", headers={"Host": "etl-monitor.example.com", "X-Request-ID": "ci-image-1"})
        if page.getresponse().status != 301:  # SECURE_SSL_REDIRECT: the proxy would have sent https
            fail("GET /admin/login/ over http was not redirected to https", *names)
        logs = run(*PODMAN, "logs", "etl-image-web")
        lines = [line for line in (logs.stdout + logs.stderr).splitlines() if line.startswith("{")]
        requests = [json.loads(line) for line in lines if '"etl_monitor.requests"' in line]
        if not any(entry.get("request_id") == "ci-image-1" and entry.get("status") == 301 for entry in requests):
            fail(f"the web container's log has no JSON request line for the page: {lines[-5:]}", *names)
        print(f"image: LOG_FORMAT=json gives JSON request lines with request ids ({len(requests)} seen)")
    finally:
        for name in names:
            run(*PODMAN, "rm", "--force", name, check=False)
        run("psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {DATABASE}", check=False)


if __name__ == "__main__":
    main(sys.argv[1])
