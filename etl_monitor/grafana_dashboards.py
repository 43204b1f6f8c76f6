"""The Grafana dashboards as a site installs them: deploy/grafana/dashboards/*.json with the links
into ETL Monitor pointing at this site (``manage.py grafana_dashboards``, docs/dashboards.md).

Every link in the dashboards is ``${etl_monitor_url}/…``, where ``etl_monitor_url`` is a hidden
textbox variable. Rendering sets that variable's value (its ``query``, ``current`` and
``options``) to ``ETL_MONITOR_BASE_URL`` and changes nothing else, byte for byte: the shipped
file's text is edited in place rather than parsed and written again, so a rendered file differs
from the repository's by that value only and ``diff`` shows exactly it. The edit is checked by
parsing the result: if the old value appears anywhere outside the variable, rendering refuses
instead of rewriting it there too.

Files are written through a temporary file and a rename, so Grafana's provisioning (which reads
the directory every minute) never sees half a dashboard.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from etl_monitor.errors import InvalidInput

DASHBOARDS_SOURCE = Path(settings.BASE_DIR) / "deploy" / "grafana" / "dashboards"
URL_VARIABLE = "etl_monitor_url"


def grafana_base_url(value: str) -> str:
    """``ETL_MONITOR_BASE_URL`` as the dashboards' links need it: an http(s) URL with a host and
    no trailing slash (the links add ``/admin/…`` themselves)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise InvalidInput(
            {
                "ETL_MONITOR_BASE_URL": [
                    f"{value!r} is not an http(s) URL such as https://etl.example.com "
                    "(the address people open ETL Monitor at; no query or fragment)."
                ]
            }
        )
    return value.rstrip("/")


def _url_variable(dashboard: dict[str, Any], name: str) -> dict[str, Any]:
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("name") == URL_VARIABLE:
            return variable
    raise InvalidInput({name: [f"The dashboard has no {URL_VARIABLE} variable for its links into ETL Monitor."]})


def _url_variable_set(variable: dict[str, Any], url: str) -> None:
    variable["query"] = url
    variable["current"] = {**variable.get("current", {}), "text": url, "value": url}
    variable["options"] = [{**option, "text": url, "value": url} for option in variable.get("options", [])]


def grafana_dashboard_render(*, text: str, base_url: str, name: str) -> str:
    """One dashboard file's ``text`` with its ``etl_monitor_url`` variable set to ``base_url``
    (already checked by ``grafana_base_url``); ``name`` names the file in errors."""
    dashboard = json.loads(text)
    variable = _url_variable(dashboard, name)
    old = variable.get("query")
    if not isinstance(old, str) or not old:
        raise InvalidInput({name: [f"The {URL_VARIABLE} variable has no value to replace."]})
    expected = copy.deepcopy(dashboard)
    _url_variable_set(_url_variable(expected, name), base_url)
    rendered = text.replace(json.dumps(old), json.dumps(base_url))
    if json.loads(rendered) != expected:
        raise InvalidInput(
            {
                name: [
                    f"The {URL_VARIABLE} variable's value {old!r} must appear in its query, current and "
                    "options only, each time the same (it appears elsewhere too, or they differ)."
                ]
            }
        )
    return rendered


def grafana_dashboards_render(*, base_url: str) -> dict[str, str]:
    """Every shipped dashboard, by file name, rendered for ``base_url`` (ETL_MONITOR_BASE_URL)."""
    url = grafana_base_url(base_url)
    return {
        path.name: grafana_dashboard_render(text=path.read_text(encoding="utf-8"), base_url=url, name=path.name)
        for path in sorted(DASHBOARDS_SOURCE.glob("*.json"))
    }


def _output_checked(output: Path) -> None:
    if not output.is_dir():
        what = "does not exist" if not output.exists() else "is not a directory"
        raise InvalidInput({"output": [f"{output} {what}; give the directory Grafana's provisioning reads."]})


def grafana_dashboards_write(*, output: Path, base_url: str) -> list[Path]:
    """Write every dashboard into ``output`` (GRAFANA_DASHBOARDS_DIR), each file atomically;
    return the files written. Files of the directory that are not ours are left alone."""
    _output_checked(output)
    rendered = grafana_dashboards_render(base_url=base_url)
    if not os.access(output, os.W_OK | os.X_OK):
        raise InvalidInput({"output": [f"{output} is not writable by this user."]})
    written = []
    for name, text in rendered.items():
        target = output / name
        try:
            handle, temporary = tempfile.mkstemp(dir=output, prefix=f".{name}.", suffix=".tmp")
        except OSError as exc:
            raise InvalidInput({"output": [f"Cannot write to {output}: {exc.strerror}."]}) from None
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
                file.write(text)
            os.chmod(temporary, 0o644)  # Grafana often runs as another user: it must read them
            os.replace(temporary, target)
        except OSError as exc:
            Path(temporary).unlink(missing_ok=True)
            raise InvalidInput({"output": [f"Cannot write {target}: {exc.strerror}."]}) from None
        written.append(target)
    return written


def grafana_dashboards_stale(*, output: Path, base_url: str) -> list[str]:
    """The dashboard files of ``output`` that differ from what ``grafana_dashboards_write`` would
    write there (missing ones included), by name; empty when the directory is up to date."""
    _output_checked(output)
    stale = []
    for name, text in grafana_dashboards_render(base_url=base_url).items():
        target = output / name
        try:
            current = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current != text:
            stale.append(name)
    return stale
