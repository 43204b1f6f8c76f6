from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from signals_app import tokens
from signals_app.models import IngestToken


@pytest.fixture
def token_for(editor):
    def make(loader, kind=IngestToken.Kind.API) -> str:
        _token, raw = tokens.ingest_token_create(user=editor, loader=loader, name="etl job", kind=kind)
        return raw

    return make


@pytest.fixture
def job(active_loader, token_for) -> APIClient:
    """An ETL job's HTTP client for SALES-DAILY."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(active_loader)}")
    return client


def signal(**overrides) -> dict:
    return {
        "loader_code": "SALES-DAILY",
        "signal_key": "rows_loaded",
        "signal_value": 1234,
        "validation_status": "SUCCESS",
        "metric_type": "ROW_COUNT",
        **overrides,
    }
