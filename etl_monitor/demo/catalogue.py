"""The demo's catalogue: its users, defaults, teams, domains, schedules, troubles and texts, and
what ``demo_generate`` reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from etl_monitor.bootstrap import DEMO_CHECKER, DEMO_MAKER, DEMO_TEAMS, DEMO_USER_PREFIX
from etl_monitor.errors import StateConflict

DEMO_OPERATOR = f"{DEMO_USER_PREFIX}operator"
DEMO_USERS = (DEMO_MAKER, DEMO_CHECKER, DEMO_OPERATOR)
DEFAULT_LOADERS = 12
DEFAULT_DAYS = 14
DEFAULT_SEED = 18
MAX_LOADERS = 2000
REASON = "Demo data"
BATCH = 2000

# Healthy loaders and the troubled ones the pages should show; see ``profiles_assign``.
HEALTHY, FAILING, LATE, SLOW, LOW_VOLUME, FLAKY = "healthy", "failing", "late", "slow", "low-volume", "flaky"
TROUBLES = (FAILING, LATE, SLOW, LOW_VOLUME, FLAKY)
TROUBLE_SHARE = 0.04

TEAMS = [
    *({"slug": t["slug"], "name": t["name"]} for t in DEMO_TEAMS),  # no mailbox: demo data sends nothing
    {"slug": "logistics", "name": "Logistics"},
    {"slug": "marketing-insights", "name": "Marketing Insights"},
]
DOMAINS = [
    ("ORDERS", "Orders", "shop-postgres", "dwh.orders"),
    ("PAYMENTS", "Payments", "psp-api", "dwh.payments"),
    ("SHIPMENTS", "Shipments", "wms", "dwh.shipments"),
    ("INVOICES", "Invoices", "erp", "dwh.invoices"),
    ("CUSTOMERS", "Customers", "crm-api", "dwh.customers"),
    ("PRODUCTS", "Product catalogue", "pim", "dwh.products"),
    ("RETURNS", "Returns", "shop-postgres", "dwh.returns"),
    ("LEDGER", "General ledger", "erp", "dwh.ledger"),
    ("CAMPAIGNS", "Marketing campaigns", "ads-api", "dwh.campaigns"),
    ("WEB-EVENTS", "Web events", "kafka", "lake.web_events"),
    ("PAYROLL", "Payroll", "hr-system", "dwh.payroll"),
    ("STOCK", "Stock levels", "wms", "dwh.stock"),
    ("SUPPLIERS", "Suppliers", "erp", "dwh.suppliers"),
    ("FX-RATES", "Exchange rates", "ecb-feed", "dwh.fx_rates"),
    ("TICKETS", "Support tickets", "helpdesk-api", "dwh.tickets"),
    ("FORECAST", "Demand forecast", "ml-platform", "dwh.forecast"),
]
REGIONS = ["EU", "US", "APAC", "UK", "LATAM"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Singapore", "Europe/London", "Australia/Sydney"]
TEAM_OF_SOURCE = {"erp": "finance-analytics", "psp-api": "finance-analytics", "hr-system": "finance-analytics"}


@dataclass(frozen=True)
class Cadence:
    name: str
    cron: str  # {m} minute, {h} hour, {h2} a second hour
    label: str
    weight: int
    duration_s: tuple[int, int]  # typical duration range of a run
    grace: int
    severity: str


CADENCES = [
    Cadence("15MIN", "*/15 * * * *", "every 15 minutes", 3, (20, 120), 5, "MEDIUM"),
    Cadence("HOURLY", "{m} * * * *", "hourly", 20, (60, 480), 10, "MEDIUM"),
    Cadence("4H", "{m} */4 * * *", "every four hours", 20, (120, 900), 15, "MEDIUM"),
    Cadence("DAILY", "{m} {h} * * *", "daily", 32, (300, 2400), 30, "HIGH"),
    Cadence("TWICE-DAILY", "{m} {h},{h2} * * *", "twice a day", 12, (240, 1500), 20, "HIGH"),
    Cadence("WEEKDAYS", "{m} {h} * * 1-5", "on weekdays", 13, (300, 1800), 30, "LOW"),
]

ERRORS = [
    'psycopg.OperationalError: connection to server at "{host}" failed: timeout expired',
    'duplicate key value violates unique constraint "{table}_pkey"',
    "HTTP 503 from the source API after 5 retries",
    "S3 upload failed: SlowDown (Please reduce your request rate)",
    'column "amount_eur" does not exist',
]
COMMENTS = [
    "The source database was restarted for patching at the same time; rerunning.",
    "Raised the connection timeout to 60 s; the rerun went through.",
    "Upstream export arrived late; the load waited for the lock on the target table.",
    "Partial extract: the source's nightly snapshot was still being written.",
    "Index rebuild on the target table slowed the load down; moved the rebuild to Sunday.",
]


class DemoPresent(StateConflict):
    """The database already holds the demo (a loader tagged DEMO_TAG)."""


@dataclass
class DemoReport:
    """What ``demo_generate`` wrote, for the command to print and the tests to check."""

    loaders: int = 0
    active: int = 0
    days: int = 0
    runs: int = 0
    signals: int = 0
    incidents: int = 0
    events: int = 0
    partitions: int = 0
    seconds: float = 0.0
    profiles: dict[str, str] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)  # what ``reset`` removed first
    left_out: list[str] = field(default_factory=list)  # codes taken by loaders that are not the demo's
