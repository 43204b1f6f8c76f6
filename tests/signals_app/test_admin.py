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
    assert "Start a run: curl -fsS -X POST http://" in html and "/api/v1/runs/" in html
    listing = client.get("/admin/signals_app/ingesttoken/").content.decode()
    assert "will not be shown again" not in listing


def test_a_new_ping_key_comes_with_its_ping_url_and_a_curl_line(client, editor, active_loader, settings):
    settings.ETL_MONITOR_BASE_URL = "https://etl.example.com"
    client.force_login(editor)
    response = client.post(
        "/admin/signals_app/ingesttoken/add/", {"loader": active_loader.pk, "kind": "PING", "name": "cron"}, follow=True
    )
    html = response.content.decode()
    raw = html.split("it will not be shown again: ", 1)[1].split("<", 1)[0].strip()
    url = f"https://etl.example.com/ping/{raw}/SALES-DAILY"
    assert f"Ping URL: {url}" in html and f"curl -fsS -m 10 --retry 3 {url}" in html
    other = client.get("/admin/signals_app/ingesttoken/").content.decode()
    assert raw not in other  # shown once, with its usage, and never again


def test_two_people_creating_tokens_at_once_each_see_their_own(rf, editor, editor2, active_loader):
    """One ModelAdmin serves every request: a plaintext kept on it between saving and answering
    would reach whoever answered next. Interleave two creations the way two threads can."""
    from django.contrib import admin as django_admin
    from django.contrib.messages import get_messages
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.contrib.sessions.backends.db import SessionStore

    token_admin = django_admin.site._registry[IngestToken]

    def request_of(user):
        request = rf.post("/admin/signals_app/ingesttoken/add/")
        request.user, request.session = user, SessionStore()
        request._messages = FallbackStorage(request)
        return request

    form_class = token_admin.get_form(request_of(editor))
    requests, objects = [], []
    for user, name in ((editor, "one"), (editor2, "two")):
        request = request_of(user)
        form = form_class({"loader": active_loader.pk, "kind": "API", "name": name})
        assert form.is_valid(), form.errors
        obj = IngestToken(loader=active_loader, name=name)
        token_admin.save_model(request, obj, form, change=False)
        requests.append(request)
        objects.append(IngestToken.objects.get(pk=obj.pk))
    shown = []
    for request, obj in zip(requests, objects, strict=True):
        token_admin.response_add(request, obj)
        text = " ".join(str(m) for m in get_messages(request))
        shown.append(text.split("it will not be shown again: ", 1)[1].split()[0])
    assert shown[0].startswith(objects[0].prefix) and shown[1].startswith(objects[1].prefix)


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
