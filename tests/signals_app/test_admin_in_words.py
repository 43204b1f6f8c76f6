"""The run list shows durations in words, and token revocation says "1 token was revoked"."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from signals_app import tokens
from signals_app.models import IngestToken, Run, RunStatus


def test_the_run_list_shows_durations_in_words(client, viewer, active_loader):
    now = timezone.now()
    Run.objects.create(
        loader=active_loader,
        status=RunStatus.SUCCEEDED,
        started_at=now - dt.timedelta(minutes=2),
        finished_at=now,
        duration_seconds=3781.104584,
    )
    client.force_login(viewer)
    html = client.get("/admin/signals_app/run/").content.decode()
    assert "1 h 3 min" in html
    assert "3781.104584" not in html


def test_revoking_one_token_says_it_in_the_singular(client, editor, active_loader):
    token, _raw = tokens.ingest_token_create(user=editor, loader=active_loader, name="job", kind=IngestToken.Kind.API)
    client.force_login(editor)
    done = client.post(
        "/admin/signals_app/ingesttoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
        follow=True,
    ).content.decode()
    assert "1 token was revoked." in done
