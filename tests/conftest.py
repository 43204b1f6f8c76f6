"""Fixtures shared by every test: users per role, teams, loaders in each state, service gates."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test.utils import override_settings

from etl_monitor.roles import Role, roles_sync
from loaders import services
from loaders.models import Loader, LoaderVersion, Team
from tests.processes import RedisServer

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> Iterator[None]:
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(scope="session", autouse=True)
def _eager_celery() -> Iterator[None]:
    # Tasks run inline unless a test starts a real worker (those use their own process).
    from etl_monitor.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture(scope="session", autouse=True)
def _seeds_survive_flushes() -> Iterator[None]:
    # A transactional test's teardown flushes every table; the data migrations' rows come back
    # with the post_migrate Django sends then (tests/seeds.py says why and which).
    from django.apps import apps
    from django.db.models.signals import post_migrate

    from tests.seeds import migration_seeds_restore

    # Sent once per app that has models (Django skips the others): the last such app's signal
    # comes after the role groups are back.
    sender = [config for config in apps.get_app_configs() if config.models_module is not None][-1]
    post_migrate.connect(migration_seeds_restore, sender=sender, dispatch_uid="tests.seeds")
    yield
    post_migrate.disconnect(sender=sender, dispatch_uid="tests.seeds")


def _service_unavailable(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true) but is not configured/reachable.")
    pytest.skip(f"{what} not configured (set DATABASE_URL/REDIS_URL to run this test).")


@pytest.fixture
def require_postgres() -> None:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        _service_unavailable("PostgreSQL (DATABASE_URL)")


@pytest.fixture
def require_redis() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        _service_unavailable("Redis (REDIS_URL)")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis at REDIS_URL is not reachable: {exc}")
        pytest.skip(f"Redis not reachable: {exc}")
    return url


def redis_cache(url: str, timeout: float | None = None) -> dict[str, Any]:
    """CACHES for a Redis cache at ``url``."""
    options = {"socket_connect_timeout": timeout, "socket_timeout": timeout} if timeout else {}
    return {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url, "OPTIONS": options}}


@pytest.fixture
def outages_forgotten() -> Iterator[None]:
    """Outages are remembered per process (etl_monitor.outage): one test's Redis outage must not
    carry over to the next."""
    from etl_monitor import outage

    outage.outages_reset()
    yield
    outage.outages_reset()


@pytest.fixture
def nothing_listens() -> str:
    """A Redis address where nothing listens (Redis down)."""
    from tests.net import free_port

    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def cache_down(settings: Any, nothing_listens: str, outages_forgotten: None) -> None:
    settings.CACHES = redis_cache(nothing_listens)


@pytest.fixture
def broker_at(monkeypatch: pytest.MonkeyPatch, outages_forgotten: None) -> Callable[[str], None]:
    """Point the Celery app at a broker URL for the rest of this test, with eager mode off (both
    restored after)."""
    from etl_monitor.celery import app

    def point(url: str) -> None:
        monkeypatch.setitem(app.conf, "task_always_eager", False)
        monkeypatch.setitem(app.conf, "broker_url", url)

    return point


@pytest.fixture
def broker_down(broker_at: Callable[[str], None], nothing_listens: str) -> None:
    broker_at(nothing_listens)


@pytest.fixture
def make_user(db: Any) -> Callable[..., User]:
    roles_sync()
    counter = {"n": 0}

    def make(*roles: str, username: str | None = None, staff: bool = True, **extra: Any) -> User:
        counter["n"] += 1
        name = username or f"{'-'.join(r.lower() for r in roles) or 'norole'}-{counter['n']}"
        user = User.objects.create_user(username=name, password="pw-for-tests-123", is_staff=staff, **extra)
        user.groups.set(Group.objects.filter(name__in=roles))
        return User.objects.get(pk=user.pk)  # fresh: no stale permission cache

    return make


@pytest.fixture
def viewer(make_user: Callable[..., User]) -> User:
    return make_user(Role.VIEWER, username="vera-viewer")


@pytest.fixture
def editor(make_user: Callable[..., User]) -> User:
    return make_user(Role.EDITOR, username="eddie-editor")


@pytest.fixture
def editor2(make_user: Callable[..., User]) -> User:
    return make_user(Role.EDITOR, username="erin-editor")


@pytest.fixture
def approver(make_user: Callable[..., User]) -> User:
    return make_user(Role.APPROVER, username="abby-approver")


@pytest.fixture
def approver2(make_user: Callable[..., User]) -> User:
    return make_user(Role.APPROVER, username="alan-approver")


@pytest.fixture
def operator(make_user: Callable[..., User]) -> User:
    return make_user(Role.OPERATOR, username="otto-operator")


@pytest.fixture
def admin_user(make_user: Callable[..., User]) -> User:
    return make_user(Role.ADMIN, username="ada-admin")


@pytest.fixture
def maker_checker(make_user: Callable[..., User]) -> User:
    """One person holding both the Editor and the Approver role."""
    return make_user(Role.EDITOR, Role.APPROVER, username="mia-maker-checker")


@pytest.fixture
def team(db: Any) -> Team:
    return Team.objects.create(slug="data-platform", name="Data Platform", email="dp@example.com")


CONTRACT = {
    "description": "Nightly sales",
    "source_system": "shop",
    "target": "dwh.sales",
    "schedule_cron": "30 2 * * *",
    "schedule_timezone": "Europe/Berlin",
    "grace_minutes": 20,
    "max_duration_minutes": 45,
    "expected_rows_min": 100,
    "expected_rows_max": 1000,
    "default_severity": "HIGH",
}


@pytest.fixture
def new_loader(editor: User, team: Team) -> Callable[..., Loader]:
    """Create a loader with a DRAFT v1 as ``editor``."""

    def make(code: str = "SALES-DAILY", **data: Any) -> Loader:
        payload = {"loader_code": code, "name": f"{code} loader", "owner": team.slug, **CONTRACT, **data}
        return services.loader_create(user=editor, data=payload)

    return make


@pytest.fixture
def active_loader(new_loader: Callable[..., Loader], editor: User, approver: User) -> Loader:
    """SALES-DAILY with v1 ACTIVE (made by ``editor``, approved by ``approver``)."""
    loader = new_loader()
    version = services.loader_version_submit(user=editor, version=loader.open_version)
    services.loader_version_approve(user=approver, version=version)
    return Loader.objects.get(pk=loader.pk)


@pytest.fixture
def pending_loader(active_loader: Loader, editor: User) -> Loader:
    """SALES-DAILY with v1 ACTIVE and v2 PENDING_APPROVAL (max duration 60)."""
    services.loader_edit(user=editor, loader=active_loader, data={"max_duration_minutes": 60})
    draft = Loader.objects.get(pk=active_loader.pk).open_version
    services.loader_version_submit(user=editor, version=draft)
    return Loader.objects.get(pk=active_loader.pk)


def version(loader: Loader, number: int) -> LoaderVersion:
    return LoaderVersion.objects.get(loader=loader, number=number)


def system_loaders_remove(request: pytest.FixtureRequest) -> None:
    """For tests of the loader registry itself: start from a registry without the loaders the
    platform seeds (the STATS-* loaders of statistics capture, their captures and team), so "nothing was
    written" means no loader at all. Those loaders are tested in tests/integrations/test_captures.py.
    Tests that use no database are left alone."""
    marker = request.node.get_closest_marker("django_db")
    names = set(request.fixturenames)
    if marker is None and not names & {"db", "transactional_db"}:
        return
    transactional = "transactional_db" in names or (marker is not None and marker.kwargs.get("transaction"))
    request.getfixturevalue("transactional_db" if transactional else "db")
    from integrations.models import Capture
    from loaders.models import Loader, LoaderVersion, Team

    Capture.objects.filter(system=True).delete()
    seeded = Loader.objects.filter(owner__slug="etl-monitor", loader_code__startswith="STATS-")
    ids = list(seeded.values_list("pk", flat=True))
    seeded.delete()
    Team.objects.filter(slug="etl-monitor", loaders__isnull=True).delete()
    # …and their history rows, which outlive the rows themselves.
    Capture.history.filter(system=True).delete()
    Loader.history.filter(id__in=ids).delete()
    LoaderVersion.history.filter(loader_id__in=ids).delete()
    Team.history.filter(slug="etl-monitor").delete()


def at_once(work: Any, count: int) -> list[Any]:
    """Run ``work()`` in ``count`` threads released together (a barrier), each with its own
    database connection; return what they returned. An exception in any thread is raised here."""
    import threading

    from django.db import connections

    barrier = threading.Barrier(count, timeout=10)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(work())
        except BaseException as exc:  # noqa: BLE001 — raised in the test's thread below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    assert len(results) == count, f"{count - len(results)} thread(s) did not finish"
    return results


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("The redis-server program is required in CI (CI=true).")
        pytest.skip("redis-server is not installed.")
    server = RedisServer(tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist with ``--dist loadgroup`` (CI's PostgreSQL pass), the end-to-end suite and
    the browser suite each run on one worker: their platform and their browser start once per
    worker that runs any of their tests."""
    for item in items:
        for group in ("e2e", "browser"):
            if item.nodeid.startswith(f"tests/{group}/"):
                item.add_marker(pytest.mark.xdist_group(group))
