"""First-run setup used by ``make run``: the first admin, and what marks demo data (``etl_monitor.demo``).

Both are idempotent: running them again changes nothing.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from etl_monitor.errors import InvalidInput
from etl_monitor.roles import Role, roles_sync

# Demo data is recognisable, so that what counts as a team's own work (the onboarding checklist)
# leaves it out: every demo object is written by a user whose name starts with DEMO_USER_PREFIX,
# and every demo loader carries the tag DEMO_TAG.
DEMO_USER_PREFIX = "demo-"
DEMO_TAG = "demo"
DEMO_MAKER = f"{DEMO_USER_PREFIX}maker"
DEMO_CHECKER = f"{DEMO_USER_PREFIX}checker"


@transaction.atomic
def admin_ensure(*, username: str, password: str | None) -> tuple[bool, str | None]:
    """Create the first superuser (Admin role) unless a superuser exists.

    Returns (created, generated_password); the generated password is only
    returned (to be printed once), never stored in clear anywhere. A given password
    that fails AUTH_PASSWORD_VALIDATORS is refused (InvalidInput naming the problems).
    """
    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return False, None
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(16)
    try:  # the first admin's password meets the same rules as every other password
        validate_password(password, user=User(username=username))
    except ValidationError as exc:
        raise InvalidInput({"password": list(exc.messages)}) from None
    user = User.objects.create_superuser(username=username, email="", password=password)
    roles_sync()
    user.groups.add(Group.objects.get(name=Role.ADMIN))
    return True, generated


DEMO_TEAMS = [
    {"slug": "data-platform", "name": "Data Platform", "email": "data-platform@example.com"},
    {"slug": "finance-analytics", "name": "Finance Analytics", "email": "finance-analytics@example.com"},
]

DEMO_LOADERS = [
    {
        "loader_code": "SALES-DAILY",
        "name": "Daily sales load",
        "owner": "finance-analytics",
        "tags": [DEMO_TAG, "sales", "daily"],
        "description": "Loads the previous day's sales from the shop database into the warehouse.",
        "source_system": "shop-postgres",
        "target": "dwh.sales_fact",
        "schedule_cron": "30 2 * * *",
        "schedule_timezone": "Europe/Berlin",
        "grace_minutes": 20,
        "max_duration_minutes": 45,
        "expected_rows_min": 10000,
        "expected_rows_max": 500000,
        "freshness_sla_minutes": 1440,
        "default_severity": "HIGH",
        "connection_host": "shop-db.internal",
        "connection_port": 5432,
        "connection_database": "shop",
        "connection_user": "etl_reader",
    },
    {
        "loader_code": "INVENTORY-HOURLY",
        "name": "Hourly inventory snapshot",
        "owner": "data-platform",
        "tags": [DEMO_TAG, "inventory", "hourly"],
        "source_system": "erp",
        "target": "dwh.inventory_snapshot",
        "schedule_cron": "5 * * * *",
        "schedule_timezone": "UTC",
        "grace_minutes": 10,
        "max_duration_minutes": 15,
        "expected_rows_min": 1000,
        "expected_rows_max": 100000,
        "default_severity": "MEDIUM",
    },
    {
        "loader_code": "CRM-SYNC",
        "name": "CRM contacts sync",
        "owner": "data-platform",
        "tags": [DEMO_TAG, "crm"],
        "source_system": "crm-api",
        "target": "dwh.contacts",
        "schedule_cron": "0 */4 * * *",
        "default_severity": "LOW",
    },
]


def demo_load() -> bool:
    """The small demo (``etl_monitor.demo`` with its defaults); False if the demo is already there.

    SALES-DAILY: v1 ACTIVE and v2 PENDING_APPROVAL (a reviewer can try the flow);
    INVENTORY-HOURLY: v1 ACTIVE; CRM-SYNC: a DRAFT only (onboarding in progress); and more.
    """
    from etl_monitor.demo import DemoPresent, demo_generate

    try:
        demo_generate()
    except DemoPresent:
        return False
    return True
