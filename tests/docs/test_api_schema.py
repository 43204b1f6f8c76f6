"""The OpenAPI schema committed for the docs site (docs/api/openapi.yaml) is the one the code
generates: an API change without ``python manage.py docs_schema`` fails here, naming the command."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from tests.docs.pages import OPENAPI_FILE


def test_the_committed_schema_is_what_the_code_generates() -> None:
    out = StringIO()
    call_command("docs_schema", "--check", stdout=out)
    assert "is up to date" in out.getvalue()


def test_it_is_the_schema_production_serves() -> None:
    schema = yaml.safe_load(OPENAPI_FILE.read_text())

    assert schema["info"]["title"] == "ETL Monitor API"
    assert "/api/v1/loaders/{loader_code}/approve/" in schema["paths"]
    # A PositiveIntegerField has PostgreSQL's 32-bit bound, not SQLite's 64-bit one, whatever
    # database the tests run on.
    bounds = {
        component["properties"]["max_duration_minutes"].get("maximum")
        for component in schema["components"]["schemas"].values()
        if "max_duration_minutes" in component.get("properties", {})
    }
    assert bounds - {None} == {2147483647}


def test_a_stale_schema_fails_the_check_naming_the_command(tmp_path: Path) -> None:
    stale = tmp_path / "openapi.yaml"
    stale.write_text(OPENAPI_FILE.read_text().replace("ETL Monitor API", "Old title", 1))

    with pytest.raises(
        CommandError, match=rf"{stale} is out of date .*run `python manage.py docs_schema --output {stale}`"
    ):
        call_command("docs_schema", "--check", "--output", str(stale))


def test_a_missing_schema_fails_the_check(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"is missing: run `python manage\.py docs_schema"):
        call_command("docs_schema", "--check", "--output", str(tmp_path / "openapi.yaml"))


def test_it_writes_the_schema(tmp_path: Path) -> None:
    target = tmp_path / "api" / "openapi.yaml"

    call_command("docs_schema", "--output", str(target), stdout=StringIO())

    assert target.read_bytes() == OPENAPI_FILE.read_bytes()
