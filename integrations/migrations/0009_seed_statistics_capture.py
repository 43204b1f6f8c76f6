"""The roadmap's statistics capture (section 1.5): the four STATS loaders, ACTIVE and owned by the
system team, and their capture definitions.

The loaders are like any other (admin, API, signal queries); they are created active because
the platform itself defines them — there is nothing for a second person to review. The captures
run every 5 minutes once their data source is configured (PROMETHEUS_URL / ELASTICSEARCH_URL or
a data source of that name); until then they are skipped and say so.
"""

from django.db import migrations
from django.utils import timezone

SYSTEM_TEAM = ("etl-monitor", "ETL Monitor (system)")
REASON = "Seeded: statistics capture"

LOADERS = [
    ("STATS-ERROR-RATE", "Error Rate Statistics", "Elasticsearch", "ERROR log lines per service, every 5 minutes."),
    ("STATS-PERF", "Performance Statistics", "Prometheus", "p99 request latency per service, every 5 minutes."),
    ("STATS-AVAIL", "Availability Statistics", "Prometheus", "Share of successful scrapes (up) per job, in %."),
    ("STATS-INFRA", "Infrastructure Statistics", "Prometheus", "Memory (% of limit) and CPU (cores) per pod."),
]

CAPTURES = [
    {
        "name": "error-rate",
        "description": "ERROR log lines per service (Elasticsearch).",
        "loader": "STATS-ERROR-RATE",
        "source": "elasticsearch",
        "source_kind": "ELASTICSEARCH",
        "query": "level:ERROR",
        "key_label": "service.name",
        "metric_type": "ERROR_COUNT",
    },
    {
        "name": "latency-p99",
        "description": "p99 latency per service in milliseconds, from the request duration histogram.",
        "loader": "STATS-PERF",
        "source": "prometheus",
        "source_kind": "PROMETHEUS",
        "query": "histogram_quantile(0.99, sum by (service, le) "
        "(rate(http_server_request_duration_seconds_bucket[5m]))) * 1000",
        "key_label": "service",
        "metric_type": "LATENCY_P99_MS",
    },
    {
        "name": "availability",
        "description": "Availability per job: the share of successful scrapes over the bucket, in %.",
        "loader": "STATS-AVAIL",
        "source": "prometheus",
        "source_kind": "PROMETHEUS",
        "query": "avg by (job) (avg_over_time(up[5m])) * 100",
        "key_label": "job",
        "metric_type": "UPTIME_PERCENT",
    },
    {
        "name": "memory",
        "description": "Memory used per pod, in % of its limit.",
        "loader": "STATS-INFRA",
        "source": "prometheus",
        "source_kind": "PROMETHEUS",
        "query": "sum by (pod) (container_memory_usage_bytes) / sum by (pod) (container_spec_memory_limit_bytes) * 100",
        "key_label": "pod",
        "key_prefix": "memory:",
        "metric_type": "MEMORY_PERCENT",
    },
    {
        "name": "cpu",
        "description": "CPU used per pod, in cores.",
        "loader": "STATS-INFRA",
        "source": "prometheus",
        "source_kind": "PROMETHEUS",
        "query": "sum by (pod) (rate(container_cpu_usage_seconds_total[5m]))",
        "key_label": "pod",
        "key_prefix": "cpu:",
        "metric_type": "CPU_CORES",
    },
]


def _history(apps, model_name, obj, now):
    """The "created" history row simple-history would have written."""
    app, name = model_name.split(".")
    Historical = apps.get_model(app, f"Historical{name}")
    kept = {f.attname for f in Historical._meta.fields}
    values = {f.attname: getattr(obj, f.attname) for f in obj._meta.fields if f.attname in kept and f.attname != "id"}
    Historical.objects.create(
        id=obj.pk, history_date=now, history_type="+", history_change_reason=REASON, **values
    )


def seed(apps, schema_editor):
    Team = apps.get_model("loaders", "Team")
    Loader = apps.get_model("loaders", "Loader")
    LoaderVersion = apps.get_model("loaders", "LoaderVersion")
    Capture = apps.get_model("integrations", "Capture")
    now = timezone.now()
    team, created = Team.objects.get_or_create(slug=SYSTEM_TEAM[0], defaults={"name": SYSTEM_TEAM[1]})
    if created:
        _history(apps, "loaders.Team", team, now)
    loaders = {}
    for code, name, source, description in LOADERS:
        loader = Loader.objects.filter(loader_code=code).first()
        if loader is None:
            loader = Loader.objects.create(loader_code=code, name=name, owner=team, first_activated_at=now)
            _history(apps, "loaders.Loader", loader, now)
            version = LoaderVersion.objects.create(
                loader=loader,
                number=1,
                state="ACTIVE",
                description=description,
                source_system=source,
                target="ETL Monitor signals",
                default_severity="MEDIUM",
                decided_at=now,
                decision_comment="Defined by ETL Monitor (statistics capture).",
            )
            _history(apps, "loaders.LoaderVersion", version, now)
        loaders[code] = loader
    for item in CAPTURES:
        item = dict(item)
        loader = loaders[item.pop("loader")]
        if not Capture.objects.filter(name=item["name"]).exists():
            capture = Capture.objects.create(loader=loader, system=True, **item)
            _history(apps, "integrations.Capture", capture, now)


def unseed(apps, schema_editor):
    apps.get_model("integrations", "Capture").objects.filter(system=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0008_capture"),
        ("loaders", "0003_import_job"),
        ("signals_app", "0003_metric_types_infra"),
    ]

    operations = [migrations.RunPython(seed, unseed)]
