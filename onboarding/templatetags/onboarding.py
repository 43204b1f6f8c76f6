"""``{% onboarding_checklist %}`` (the overview) and ``{% onboarding_restore_link %}`` (the models
index): the operations templates load these tags, so the operations code never imports this app."""

from __future__ import annotations

from typing import Any

from django import template

from onboarding.selectors import SKIP_PERMISSION, checklist_hidden_by, checklist_visible
from onboarding.services import checklist_progress

register = template.Library()


@register.inclusion_tag("onboarding/checklist.html", takes_context=True)
def onboarding_checklist(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    if request is None or not checklist_visible(request.user):
        return {"checklist": None}
    checklist = checklist_progress(base_url=request.build_absolute_uri("/").rstrip("/"))
    return {
        "checklist": checklist,
        "can_skip": request.user.has_perm(SKIP_PERMISSION),
        "csrf_token": context.get("csrf_token"),
    }


@register.inclusion_tag("onboarding/restore_link.html", takes_context=True)
def onboarding_restore_link(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    hidden = request is not None and checklist_hidden_by(request.user)
    return {"hidden": hidden, "csrf_token": context.get("csrf_token")}
