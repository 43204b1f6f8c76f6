"""The dashboards and their provisioning as Grafana reads them: files, layout, data sources,
variables, and a round trip through grafana-foundation-sdk that must lose no key.

No service is needed: everything here reads deploy/grafana/ (and docs/dashboards.md), so it runs
on SQLite too. Each test runs over whatever deploy/grafana/dashboards/*.json holds, one test id
per dashboard, so a failure names the dashboard (and the panel, target or key path).
"""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins

from tests.grafana.dashboards import (
    DASHBOARD_UIDS,
    DASHBOARDS,
    DATASOURCES_FILE,
    ELASTICSEARCH,
    GRAFANA,
    POSTGRES,
    PROMETHEUS,
    ROOT,
    dashboards,
    panels,
    provisioned_datasources,
    variables_used,
)

with warnings.catch_warnings():
    # The SDK's v1 model is the one for schemaVersion 41 JSON; importing it warns "prefer v2".
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.models.dashboard import Dashboard

DASHBOARDS_PROVIDER_FILE = GRAFANA / "provisioning" / "dashboards" / "etl-monitor.yaml"
DOCS = ROOT / "docs" / "dashboards.md"

ALL = dashboards()
by_dashboard = pytest.mark.parametrize("uid", sorted(ALL))

# The variables each dashboard must offer (besides the hidden etl_monitor_url every one has):
# the "loader, owner team, service and environment", where they make sense.
REQUIRED_VARIABLES = {
    "etl-transaction-monitoring": {"environment", "team", "loader"},
    "etl-log-monitoring": {"environment", "service", "correlation_id"},
    "infrastructure-health": {"environment"},
    "service-integration-health": {"environment", "service"},
}
URL_VARIABLE = "etl_monitor_url"

# Grafana's own variables and SQL macros (its docs: "Global variables", the SQL data sources'
# macros, data links' variables). Anything else must be a variable of the dashboard.
GRAFANA_GLOBALS = {
    "__all_variables", "__auto", "__dashboard", "__data", "__field", "__from", "__interval",
    "__interval_ms", "__name", "__org", "__range", "__range_ms", "__range_s", "__rate_interval",
    "__rate_interval_ms", "__series", "__timezone", "__to", "__url", "__url_time_range", "__user",
    "__value", "__searchFilter",
    "__column", "__schema", "__table", "__time", "__timeEpoch", "__timeFilter", "__timeFrom",
    "__timeGroup", "__timeGroupAlias", "__timeTo", "__unixEpochFilter", "__unixEpochFrom",
    "__unixEpochGroup", "__unixEpochGroupAlias", "__unixEpochNanoFilter", "__unixEpochNanoFrom",
    "__unixEpochNanoTo", "__unixEpochTo",
}  # fmt: skip

# The special data sources Grafana itself provides, and where they may appear.
GRAFANA_BUILTIN = {"type": "grafana", "uid": "-- Grafana --"}  # the built-in annotations
MIXED = {"type": "datasource", "uid": "-- Mixed --"}  # a panel whose targets name their own


def test_the_provisioned_uids_are_the_ones_the_tests_know() -> None:
    assert provisioned_datasources() == {
        PROMETHEUS: "prometheus",
        POSTGRES: "grafana-postgresql-datasource",
        ELASTICSEARCH: "elasticsearch",
    }


@pytest.mark.parametrize("uid", DASHBOARD_UIDS)
def test_the_dashboard_file_exists(uid: str) -> None:
    assert (DASHBOARDS / f"{uid}.json").is_file(), f"deploy/grafana/dashboards/{uid}.json is missing"


def test_no_other_dashboard_file() -> None:
    assert set(ALL) <= set(DASHBOARD_UIDS), f"not one of the four: {sorted(set(ALL) - set(DASHBOARD_UIDS))}"


@by_dashboard
def test_the_file_is_written_in_the_house_style(uid: str) -> None:
    # 2-space indent and a trailing newline, exactly as json.dumps(indent=2) writes it: a diff of
    # a dashboard then shows what changed and nothing else (manage.py grafana_dashboards keeps
    # every other byte, so a site's files diff cleanly against these too).
    path = DASHBOARDS / f"{uid}.json"
    text = path.read_text()
    dashboard = json.loads(text)
    canonical = {json.dumps(dashboard, indent=2, ensure_ascii=ascii) + "\n" for ascii in (True, False)}
    assert text in canonical, (
        f"rewrite it: python -c 'import json,sys; p=sys.argv[1]; d=json.load(open(p)); "
        f'open(p,"w").write(json.dumps(d, indent=2) + "\\n")\' {path.relative_to(ROOT)}'
    )


@by_dashboard
def test_the_dashboard_header_is_complete(uid: str) -> None:
    dashboard = ALL[uid]
    assert dashboard["uid"] == uid, "uid must be the file's name (links and provisioning use it)"
    assert dashboard["schemaVersion"] >= 41
    assert dashboard.get("title", "").strip()
    assert dashboard.get("description", "").strip()
    assert "etl-monitor" in dashboard.get("tags", []), "the dashboards' links find each other by this tag"
    time = dashboard.get("time", {})
    assert re.fullmatch(r"now-\d+[mhdw]", time.get("from", "")), f"default range {time}"
    assert time.get("to") == "now"


REFRESH = re.compile(r"(\d+)([smhd])")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@by_dashboard
def test_the_refresh_is_sane(uid: str) -> None:
    # Off, or between 30 s (the SQL panels must not hammer the database; Prometheus scrapes
    # every 15 s) and an hour (a monitoring dashboard that refreshes less is a stale one).
    refresh = ALL[uid].get("refresh")
    if refresh in ("", False, None):
        return
    match = REFRESH.fullmatch(str(refresh))
    assert match, f"refresh {refresh!r} is not a Grafana duration"
    seconds = int(match.group(1)) * SECONDS[match.group(2)]
    assert 30 <= seconds <= 3600, f"refresh {refresh!r}"


@by_dashboard
def test_panel_ids_are_unique_integers(uid: str) -> None:
    ids = [panel.get("id") for panel in panels(ALL[uid])]
    assert all(isinstance(panel_id, int) for panel_id in ids), ids
    assert len(ids) == len(set(ids)), f"repeated ids: {sorted({i for i in ids if ids.count(i) > 1})}"


def _overlaps(layer: list[dict[str, Any]]) -> list[str]:
    found = []
    for i, first in enumerate(layer):
        a = first["gridPos"]
        for second in layer[i + 1 :]:
            b = second["gridPos"]
            if (
                a["x"] < b["x"] + b["w"]
                and b["x"] < a["x"] + a["w"]
                and a["y"] < b["y"] + b["h"]
                and b["y"] < a["y"] + a["h"]
            ):
                found.append(f"{first.get('title')!r} and {second.get('title')!r}")
    return found


@by_dashboard
def test_panels_sit_inside_the_grid_without_overlapping(uid: str) -> None:
    dashboard = ALL[uid]
    for panel in panels(dashboard):
        grid = panel.get("gridPos")
        assert grid, f"{panel.get('title')!r} has no gridPos"
        assert all(isinstance(grid.get(k), int) for k in "xywh"), f"{panel.get('title')!r}: {grid}"
        assert grid["x"] >= 0 and grid["y"] >= 0 and grid["w"] >= 1 and grid["h"] >= 1, panel.get("title")
        assert grid["x"] + grid["w"] <= 24, f"{panel.get('title')!r} is wider than 24 columns: {grid}"
    # A collapsed row keeps its panels at the positions they take when it is opened, so they are
    # compared among themselves; the top level is one layer.
    layers = [dashboard.get("panels", [])] + [p.get("panels", []) for p in dashboard.get("panels", [])]
    overlapping = [pair for layer in layers for pair in _overlaps(layer)]
    assert not overlapping, f"overlapping panels: {overlapping}"


def test_the_overlap_check_sees_an_overlap() -> None:
    def at(x: int, y: int, w: int, h: int) -> dict[str, Any]:
        return {"title": f"{x},{y}", "gridPos": {"x": x, "y": y, "w": w, "h": h}}

    assert _overlaps([at(0, 0, 12, 8), at(11, 7, 6, 6)]) == ["'0,0' and '11,7'"]
    assert _overlaps([at(0, 0, 12, 8), at(12, 0, 12, 8), at(0, 8, 24, 1)]) == []


def _datasource_problem(source: Any, provisioned: dict[str, str], *, allowed: tuple[dict, ...] = ()) -> str | None:
    if not isinstance(source, dict) or set(source) != {"type", "uid"}:
        return f"{source!r} is not an explicit {{type, uid}}"
    if source in allowed:
        return None
    if source["uid"] not in provisioned:
        return f"uid {source['uid']!r} is not provisioned"
    if provisioned[source["uid"]] != source["type"]:
        return f"uid {source['uid']!r} has type {source['type']!r}, provisioned as {provisioned[source['uid']]!r}"
    return None


@by_dashboard
def test_every_data_source_is_a_provisioned_one(uid: str) -> None:
    provisioned = provisioned_datasources()
    dashboard = ALL[uid]
    problems = []
    for annotation in dashboard.get("annotations", {}).get("list", []):
        problem = _datasource_problem(annotation.get("datasource"), provisioned, allowed=(GRAFANA_BUILTIN,))
        problems += [f"annotation {annotation.get('name')!r}: {problem}"] if problem else []
    for variable in dashboard.get("templating", {}).get("list", []):
        if "datasource" in variable or variable.get("type") == "query":
            problem = _datasource_problem(variable.get("datasource"), provisioned)
            problems += [f"variable {variable['name']}: {problem}"] if problem else []
    for panel in panels(dashboard):
        title = panel.get("title")
        if panel.get("type") == "row" and "datasource" not in panel:
            continue
        if panel.get("targets") or "datasource" in panel:
            problem = _datasource_problem(panel.get("datasource"), provisioned, allowed=(MIXED,))
            problems += [f"panel {title!r}: {problem}"] if problem else []
        for target in panel.get("targets", []):
            problem = _datasource_problem(target.get("datasource"), provisioned)
            problems += [f"panel {title!r} / {target.get('refId')}: {problem}"] if problem else []
            panel_source = panel.get("datasource")
            if panel_source != MIXED and target.get("datasource") != panel_source:
                problems.append(f"panel {title!r} / {target.get('refId')}: not the panel's data source")
    assert not problems, "\n".join(problems)


def test_the_data_source_check_refuses_what_grafana_would_not_find() -> None:
    provisioned = provisioned_datasources()
    assert _datasource_problem({"type": "prometheus", "uid": PROMETHEUS}, provisioned) is None
    assert "not provisioned" in _datasource_problem({"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}, provisioned)
    assert "provisioned as" in _datasource_problem({"type": "postgres", "uid": POSTGRES}, provisioned)
    assert "explicit" in _datasource_problem("ETL Monitor Prometheus", provisioned)
    assert "not provisioned" in _datasource_problem(GRAFANA_BUILTIN, provisioned)  # outside annotations


@by_dashboard
def test_every_panel_says_what_it_shows(uid: str) -> None:
    # A row is a heading, not a visualisation: Grafana shows no description for it.
    missing = [
        p.get("title") for p in panels(ALL[uid]) if p.get("type") != "row" and not p.get("description", "").strip()
    ]
    assert not missing, f"panels without a description: {missing}"


@by_dashboard
def test_every_target_has_a_ref_id_unique_in_its_panel(uid: str) -> None:
    for panel in panels(ALL[uid]):
        ref_ids = [target.get("refId") for target in panel.get("targets", [])]
        assert all(ref_ids), f"{panel.get('title')!r}: a target without refId"
        assert len(ref_ids) == len(set(ref_ids)), f"{panel.get('title')!r}: repeated refId in {ref_ids}"


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard.get("templating", {}).get("list", [])}


@by_dashboard
def test_the_dashboard_offers_its_variables(uid: str) -> None:
    variables = _variables(ALL[uid])
    missing = REQUIRED_VARIABLES.get(uid, {"environment"}) - set(variables)
    assert not missing, f"missing variables: {sorted(missing)}"
    if "correlation_id" in variables:
        assert variables["correlation_id"]["type"] == "textbox", "a correlation id is typed in, not picked"


@by_dashboard
def test_the_etl_monitor_url_variable_is_hidden_and_one_value(uid: str) -> None:
    # `manage.py grafana_dashboards` sets this variable's value; it finds it in these places only.
    variable = _variables(ALL[uid]).get(URL_VARIABLE)
    assert variable, f"no {URL_VARIABLE} variable (the links into ETL Monitor are built on it)"
    assert variable["type"] == "textbox" and variable["hide"] == 2
    url = variable["query"]
    assert re.fullmatch(r"https?://[^/\s]+(/\S*[^/])?", url), url
    assert variable["current"] == {"text": url, "value": url}
    assert [(o["text"], o["value"]) for o in variable["options"]] == [(url, url)]


def _used_texts(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, text) of every string Grafana interpolates: queries, links, titles, variable queries."""
    texts = []

    def strings(value: Any, where: str) -> None:
        if isinstance(value, str):
            texts.append((where, value))
        elif isinstance(value, dict):
            for key, inner in value.items():
                strings(inner, f"{where}.{key}")
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                strings(inner, f"{where}[{index}]")

    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") in ("query", "custom", "adhoc"):
            for key in ("query", "definition", "regex"):
                strings(variable.get(key, ""), f"variable {variable['name']}.{key}")
    for index, link in enumerate(dashboard.get("links", [])):
        strings({k: link.get(k, "") for k in ("url", "title", "tooltip")}, f"dashboard link {index}")
    for panel in panels(dashboard):
        where = f"panel {panel.get('title')!r}"
        strings(panel.get("title", ""), where)
        strings(panel.get("targets", []), f"{where} targets")
        strings(panel.get("links", []), f"{where} links")
        strings(panel.get("fieldConfig", {}), f"{where} fieldConfig")  # data links and display names
        strings(panel.get("options", {}).get("dataLinks", []), f"{where} dataLinks")
    return texts


@by_dashboard
def test_every_variable_used_is_defined(uid: str) -> None:
    dashboard = ALL[uid]
    defined = set(_variables(dashboard)) | GRAFANA_GLOBALS
    used: set[str] = set()
    undefined = []
    for where, text in _used_texts(dashboard):
        names = {name for name in variables_used(text) if not name.isdigit()}  # $1: label_replace's group
        used |= names
        undefined += [f"{where}: ${name}" for name in sorted(names - defined)]
    assert not undefined, "undefined variables:\n" + "\n".join(undefined)
    assert "environment" in used, "the environment variable filters nothing"


@by_dashboard
def test_every_variable_offered_is_used(uid: str) -> None:
    # A drop-down that filters nothing tells the reader the panels are filtered when they are not.
    dashboard = ALL[uid]
    used = {name for _, text in _used_texts(dashboard) for name in variables_used(text)}
    unused = sorted(set(_variables(dashboard)) - used)
    assert not unused, f"variables no query or link uses: {unused}"


def test_the_variable_scan_finds_every_syntax() -> None:
    text = "$a ${b} ${c:regex} [[d]] [[e:csv]] ${__data.fields.loader_code} ${__value.raw} $__timeFilter(x) '^$'"
    assert variables_used(text) == {"a", "b", "c", "d", "e", "__data", "__value", "__timeFilter"}


# grafana-foundation-sdk 0.0.21 drops these keys that Grafana itself saves. Each is named with
# its reason; nothing else may be lost. (Empty today: the SDK keeps every key we write.)
SDK_DROPS: dict[str, str] = {}


def _key_paths(value: Any, path: str = "") -> set[str]:
    paths = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            paths.add(f"{path}/{key}")
            paths |= _key_paths(inner, f"{path}/{key}")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            paths |= _key_paths(inner, f"{path}/{index}")
    return paths


def sdk_round_trip(dashboard: dict[str, Any]) -> dict[str, Any]:
    """``dashboard`` decoded by the SDK (panel options, field configs and queries as their
    plugins' types) and encoded again with its own encoder."""
    register_default_plugins()
    return json.loads(json.dumps(Dashboard.from_json(dashboard), cls=JSONEncoder))


def keys_lost(dashboard: dict[str, Any]) -> list[str]:
    lost = _key_paths(dashboard) - _key_paths(sdk_round_trip(dashboard))
    return sorted(path for path in lost if not any(re.fullmatch(pattern, path) for pattern in SDK_DROPS))


@by_dashboard
def test_a_round_trip_through_the_foundation_sdk_loses_no_key(uid: str) -> None:
    lost = keys_lost(ALL[uid])
    # Seen in exports: a null "id" and "gnetId" (the SDK drops them; a provisioned file needs neither)
    # and a Prometheus target's "step" (Grafana's "Min step" is "interval").
    assert not lost, "the SDK dropped (a key Grafana would not know either?):\n" + "\n".join(lost)


def test_the_round_trip_decodes_panels_and_queries_as_their_types() -> None:
    register_default_plugins()
    typed = Dashboard.from_json(ALL["etl-transaction-monitoring"])
    gauge = next(p for p in typed.panels if p.type_val == "gauge")
    assert type(gauge.options).__module__.endswith(".gauge")
    assert type(gauge.targets[0]).__module__.endswith(".prometheus")


def test_the_round_trip_names_a_key_the_sdk_does_not_know() -> None:
    dashboard = json.loads(json.dumps(ALL["etl-transaction-monitoring"]))
    dashboard["panels"][0]["options"]["showThresholdMarkerz"] = True
    dashboard["panels"][0]["targets"][0]["exprr"] = "up"
    assert keys_lost(dashboard) == ["/panels/0/options/showThresholdMarkerz", "/panels/0/targets/0/exprr"]


def _provisioning_variables(path: Any) -> set[str]:
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())  # comments are prose
    return set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", text))


def _docs_section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOCS.read_text(), re.M | re.S)
    assert match, f"docs/dashboards.md has no section {title!r}"
    return match.group(1)


def test_the_data_sources_file_is_provisioning_v1_with_fixed_uids() -> None:
    provisioned = yaml.safe_load(DATASOURCES_FILE.read_text())
    assert provisioned["apiVersion"] == 1
    for source in provisioned["datasources"]:
        assert re.fullmatch(r"[a-z][a-z0-9-]*", source["uid"]), f"{source['name']}: uid {source['uid']!r} is not fixed"
        assert source["editable"] is False, f"{source['name']}: a provisioned source edited in the UI is lost"
    names = [source["name"] for source in provisioned["datasources"]]
    assert len(names) == len(set(names))


def test_the_dashboards_provider_reads_the_directory_the_command_writes() -> None:
    provider_file = yaml.safe_load(DASHBOARDS_PROVIDER_FILE.read_text())
    assert provider_file["apiVersion"] == 1
    [provider] = provider_file["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "$GRAFANA_DASHBOARDS_DIR"
    assert re.fullmatch(r"[a-z][a-z0-9-]*", provider["folderUid"]), "the folder's uid is fixed"
    assert provider["allowUiUpdates"] is False, "a change saved in the UI would be overwritten within a minute"


@pytest.mark.parametrize("path", [DATASOURCES_FILE, DASHBOARDS_PROVIDER_FILE], ids=lambda p: p.parent.name)
def test_every_environment_variable_of_the_provisioning_is_documented(path: Any) -> None:
    used = _provisioning_variables(path)
    assert used, "no $VAR: the URLs and credentials must come from the environment"
    provisioning = _docs_section("Provisioning")
    undocumented = sorted(name for name in used if f"`{name}`" not in provisioning)
    assert not undocumented, f"not in docs/dashboards.md, section Provisioning: {undocumented}"
