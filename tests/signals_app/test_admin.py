"""Runs, signals and tokens in the admin."""

from __future__ import annotations

from signals_app.models import IngestToken, Run, Signal


def test_a_token_created_in_the_admin_is_shown_once(client, editor, active_loader):
    client.force_login(editor)
    response = client.post(
        "/admin/signals_app/ingesttoken/add/",
        {"loader": active_loader.pk, "kind": "API", "name": "airflow"},
        follow=True,
    )
    token = IngestToken.objects.get()
    html = response.content.decode()
    assert "it will not be shown again: etlm_" in html
    assert token.prefix in html
    listing = client.get("/admin/signals_app/ingesttoken/").content.decode()
    assert "will not be shown again" not in listing


def test_tokens_are_revoked_not_deleted(client, editor, active_loader, token_for):
    token_for(active_loader)
    client.force_login(editor)
    token = IngestToken.objects.get()
    client.post("/admin/signals_app/ingesttoken/", {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_viewers_see_runs_and_signals_but_cannot_create_tokens(client, viewer, active_loader):
    Run.objects.create(loader=active_loader, started_at="2026-11-28T01:00:00Z")
    Signal.objects.create(
        loader=active_loader,
        signal_key="rows",
        validation_status="FAILED",
        captured_at="2026-11-28T01:00:00Z",
        received_at="2026-11-28T01:00:00Z",
    )
    client.force_login(viewer)
    assert "SALES-DAILY" in client.get("/admin/signals_app/run/").content.decode()
    assert "rows" in client.get("/admin/signals_app/signal/?validation_status__exact=FAILED").content.decode()
    assert client.get("/admin/signals_app/ingesttoken/add/").status_code == 403
