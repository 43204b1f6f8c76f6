"""First run: the first admin and the demo data, both idempotent."""

from __future__ import annotations

from io import StringIO

from django.contrib.auth.models import User
from django.core.management import call_command

from loaders.models import Loader, VersionState


def test_ensure_admin_generates_and_prints_a_password_once(db, monkeypatch):
    monkeypatch.delenv("ETL_MONITOR_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("ETL_MONITOR_ADMIN_USER", "root-admin")
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    password = out.getvalue().split("password: ")[1].split()[0]
    admin = User.objects.get(username="root-admin")
    assert admin.is_superuser and admin.check_password(password)
    assert list(admin.groups.values_list("name", flat=True)) == ["Admin"]
    again = StringIO()
    call_command("ensure_admin", stdout=again)
    assert "already exists" in again.getvalue()
    assert User.objects.filter(is_superuser=True).count() == 1


def test_ensure_admin_uses_the_given_password(db, monkeypatch):
    monkeypatch.setenv("ETL_MONITOR_ADMIN_PASSWORD", "given-Pass-987")
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    assert "given-Pass-987" not in out.getvalue()
    assert User.objects.get(username="admin").check_password("given-Pass-987")


def test_demo_data_loads_once(db):
    call_command("load_demo", stdout=StringIO())
    states = {loader.loader_code: sorted(v.state for v in loader.versions.all()) for loader in Loader.objects.all()}
    assert {code: states[code] for code in ("SALES-DAILY", "INVENTORY-HOURLY", "CRM-SYNC")} == {
        "SALES-DAILY": sorted([VersionState.ACTIVE, VersionState.PENDING_APPROVAL]),
        "INVENTORY-HOURLY": [VersionState.ACTIVE],
        "CRM-SYNC": [VersionState.DRAFT],
    }
    count = Loader.objects.count()
    out = StringIO()
    call_command("load_demo", stdout=out)
    assert "already present" in out.getvalue()
    assert Loader.objects.count() == count
