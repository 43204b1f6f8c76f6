"""The shipped Grafana dashboards as data, for the tests and benchmarks that prove their queries.

``targets(kind)`` lists every query of one data source kind across the four dashboards (rows
included), so a proof runs over whatever the JSON files hold today: a panel added tomorrow is
proven without touching the test. ``interpolate`` does what Grafana does to a query's text before
sending it: its global variables and the dashboard's own (``$loader``, ``${loader:regex}``, …).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES_FILE = GRAFANA / "provisioning" / "datasources" / "etl-monitor.yaml"

# Data source uid → its kind, as provisioned (a test checks this against the YAML file).
PROMETHEUS, POSTGRES, ELASTICSEARCH = "etl-prometheus", "etl-postgres", "etl-elasticsearch"
DASHBOARD_UIDS = (
    "etl-transaction-monitoring",
    "etl-log-monitoring",
    "infrastructure-health",
    "service-integration-health",
)


@dataclass(frozen=True)
class Target:
    """One query of one panel."""

    dashboard: str  # the dashboard's uid
    panel: dict[str, Any]
    target: dict[str, Any]

    @property
    def datasource(self) -> str:
        source = self.target.get("datasource") or self.panel.get("datasource") or {}
        return source.get("uid", "")

    @property
    def name(self) -> str:
        """``dashboard / panel title / refId``: what a failing proof names."""
        return f"{self.dashboard} / {self.panel.get('title', '?')} / {self.target.get('refId', '?')}"


def dashboard_load(uid: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / f"{uid}.json").read_text())


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard file, by uid (the file's name)."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows (and the rows themselves)."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets(kind: str | None = None) -> list[Target]:
    """Every query of the dashboards, of data source uid ``kind`` if given."""
    found = []
    for uid, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                query = Target(uid, panel, target)
                if kind is None or query.datasource == kind:
                    found.append(query)
    return found


# Grafana's own variables, with the values a 24-hour dashboard at a common width gets.
GLOBALS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "86400s",
    "__range_s": "86400",
    "__range_ms": "86400000",
}


def _format(value: str | list[str], how: str | None) -> str:
    values = value if isinstance(value, list) else [value]
    if how == "regex":
        return values[0] if values == [".*"] else "(" + "|".join(re.escape(v) for v in values) + ")"
    if how == "singlequote" or how == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if how == "csv":
        return ",".join(values)
    if how in ("pipe",):
        return "|".join(values)
    if len(values) > 1:  # Grafana's default for a multi-value variable in PromQL is a regex group
        return "(" + "|".join(re.escape(v) for v in values) + ")"
    return values[0]


_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)")


def interpolate(text: str, variables: dict[str, str | list[str]] | None = None) -> str:
    """``text`` with Grafana's variables replaced: the global ones above and ``variables`` (a
    dashboard variable's value; a list for a multi-value one, ``".*"`` for "All" where the
    variable's ``allValue`` is ``.*``). An unknown variable is left as it is, so the query fails
    where Grafana's would show an error, instead of silently matching everything."""
    values: dict[str, str | list[str]] = {**GLOBALS, **(variables or {})}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(4)
        if name not in values:
            return match.group(0)
        return _format(values[name], match.group(2))

    return _VARIABLE.sub(replace, text)


def variable_defaults(dashboard: dict[str, Any]) -> dict[str, str | list[str]]:
    """Each templating variable at "All" (its ``allValue``) or its default value, as a user who
    opens the dashboard gets it."""
    values: dict[str, str | list[str]] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("includeAll"):
            values[variable["name"]] = variable.get("allValue") or ".*"
        else:
            current = variable.get("current", {}).get("value", variable.get("query", ""))
            values[variable["name"]] = current
    return values


@dataclass(frozen=True)
class Variable:
    """One templating variable of a dashboard that asks a data source for its values."""

    dashboard: str  # the dashboard's uid
    variable: dict[str, Any]

    @property
    def datasource(self) -> str:
        return (self.variable.get("datasource") or {}).get("uid", "")

    @property
    def query(self) -> str:
        """The variable's query text (``label_values(...)``, ``query_result(...)``, or SQL)."""
        query = self.variable.get("query", "")
        return query.get("query", "") if isinstance(query, dict) else query

    @property
    def name(self) -> str:
        return f"{self.dashboard} / ${self.variable.get('name', '?')}"


def variables(kind: str | None = None) -> list[Variable]:
    """Every query variable of the dashboards, of data source uid ``kind`` if given."""
    found = []
    for uid, dashboard in dashboards().items():
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            query = Variable(uid, variable)
            if kind is None or query.datasource == kind:
                found.append(query)
    return found


# ``${__data.fields.X}`` or ``${__data.fields["X"]}`` (its quotes escaped, as json.dumps writes them).
_FIELD_REFERENCE = re.compile(r'\$\{__data\.fields(?:\.(\w+)|\[\\"([^"\\]+)\\"\])')


def field_references(panel: dict[str, Any]) -> set[str]:
    """The field names a panel's links and overrides depend on: ``${__data.fields.X}`` in any link
    and the ``byName`` matchers of its overrides. A query must return each of them (a table's
    column; a time series' series name), or the link is dead and the override colours nothing."""
    config = panel.get("fieldConfig", {})
    names = {m.group(1) or m.group(2) for m in _FIELD_REFERENCE.finditer(json.dumps(config))}
    for override in config.get("overrides", []):
        matcher = override.get("matcher", {})
        if matcher.get("id") == "byName":
            names.add(matcher["options"])
    return names


def provisioned_datasources() -> dict[str, str]:
    """uid → type of each data source in the provisioning file."""
    import yaml

    provisioned = yaml.safe_load(DATASOURCES_FILE.read_text())
    return {source["uid"]: source["type"] for source in provisioned["datasources"]}


@dataclass(frozen=True)
class Link:
    """One link of a dashboard: a dashboard link, a panel link, or a data link of a field."""

    dashboard: str  # the dashboard's uid
    where: str  # "dashboard", or the panel's title and where in it
    link: dict[str, Any]

    @property
    def url(self) -> str:
        return self.link.get("url", "")


def _links_within(value: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    # Data links sit at any depth of a panel: fieldConfig.defaults.links, an override's
    # {"id": "links", "value": [...]}, options.dataLinks of some panel types.
    if isinstance(value, dict):
        if isinstance(value.get("matcher"), dict):  # an override: name the field it applies to
            where = f"field {value['matcher'].get('options')} "
        if value.get("id") == "links" and isinstance(value.get("value"), list):
            for link in value["value"]:
                yield f"{where}link {link.get('title', '')!r}", link
        for key, inner in value.items():
            if key in ("links", "dataLinks") and isinstance(inner, list):
                for link in inner:
                    if isinstance(link, dict):
                        yield f"{where}{key} {link.get('title', '')!r}", link
            elif key != "panels":  # a row's panels are walked as panels of their own
                yield from _links_within(inner, where)
    elif isinstance(value, list):
        for inner in value:
            yield from _links_within(inner, where)


def links(uid: str, dashboard: dict[str, Any]) -> list[Link]:
    """Every link of ``dashboard``: its own links, each panel's links and every data link."""
    found = [Link(uid, f"dashboard link {link.get('title', '')!r}", link) for link in dashboard.get("links", [])]
    for panel in panels(dashboard):
        title = panel.get("title", "?")
        found += [Link(uid, f"{title}: {where}", link) for where, link in _links_within(panel, "")]
    return found


# Grafana's own variable syntax (its template_srv regex): $name, [[name]], [[name:format]],
# ${name}, ${name:format}, ${name.field.path:format}.
GRAFANA_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")


def variables_used(text: str) -> set[str]:
    """The names of the variables ``text`` refers to (``__data`` for ``${__data.fields.X}``)."""
    return {match.group(1) or match.group(2) or match.group(4) for match in GRAFANA_VARIABLE.finditer(text)}
