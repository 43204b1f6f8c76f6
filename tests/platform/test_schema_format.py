"""/api/schema/ serves YAML by default and JSON when asked, by ?format=json or by the Accept header
(docs/api.md promises both; ?format= is not DRF's renderer override elsewhere in this API)."""

from __future__ import annotations

import json

import pytest
import yaml


@pytest.fixture
def reader(client, viewer):
    client.force_login(viewer)
    return client


def test_format_json_gives_json(reader):
    response = reader.get("/api/schema/?format=json")

    assert response.status_code == 200
    assert "json" in response["Content-Type"]
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.") and "/api/v1/loaders/" in schema["paths"]


def test_an_accept_header_asking_for_json_gives_json(reader):
    for accept in ("application/json", "application/vnd.oai.openapi+json"):
        response = reader.get("/api/schema/", HTTP_ACCEPT=accept)

        assert response.status_code == 200
        assert response["Content-Type"].startswith(accept)
        assert "/api/v1/loaders/" in json.loads(response.content)["paths"]


def test_yaml_stays_the_default_and_can_be_asked_for(reader):
    for url in ("/api/schema/", "/api/schema/?format=yaml"):
        response = reader.get(url)

        assert response.status_code == 200
        assert response["Content-Type"].startswith("application/vnd.oai.openapi")
        assert "json" not in response["Content-Type"]
        assert yaml.safe_load(response.content)["openapi"].startswith("3.")


def test_an_unknown_format_is_a_400_naming_the_parameter(reader):
    response = reader.get("/api/schema/?format=xml")

    assert response.status_code == 400
    assert "format" in response.json()


def test_an_accept_header_it_cannot_serve_is_a_json_406(reader):
    response = reader.get("/api/schema/", HTTP_ACCEPT="text/csv")

    assert response.status_code == 406
    assert "detail" in response.json()
