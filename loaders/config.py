"""``teams`` and ``loaders`` sections of ``apply_config`` (see etl_monitor.config).

Loaders given here behave like any other edit: a new loader gets a DRAFT, an
existing one gets its changes in a DRAFT started from the ACTIVE version, and a
human approver still has to approve (four-eyes holds for configuration as code).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from etl_monitor.config import ConfigContext, config_items, config_report
from etl_monitor.errors import ServiceError
from loaders import services
from loaders.models import Loader, LoaderVersion


class TeamsSection:
    """``teams: [{slug, name, email}]`` — owning teams, applied before loaders."""

    key = "teams"
    order = 10

    def apply(self, value: Any, ctx: ConfigContext) -> None:
        for path, item in config_items(value, self.key, ctx, "slug"):
            data = {k: v for k, v in item.items() if k != "slug"}
            try:
                with transaction.atomic():
                    _team, changed = services.team_upsert(
                        user=ctx.user, slug=item["slug"], data=data, reason=f"apply_config {ctx.source}"
                    )
            except ServiceError as exc:
                config_report(ctx, path, exc)
                continue
            action = "created" if changed == ["created"] else "changed" if changed else "unchanged"
            ctx.change(self.key, item["slug"], action, [] if action == "created" else changed)


class LoadersSection:
    """``loaders: [{loader_code, name, owner, tags, <contract fields>, submit}]``.

    ``submit: true`` on an item submits its draft for approval in the same step.
    """

    key = "loaders"
    order = 20
    allowed = {*services.LOADER_FIELDS, *LoaderVersion.CONTRACT_FIELDS, "submit"}

    def apply(self, value: Any, ctx: ConfigContext) -> None:
        for path, item in config_items(value, self.key, ctx, "loader_code"):
            unknown = sorted(set(item) - self.allowed)
            for name in unknown:
                ctx.error(f"{path}.{name}", "Unknown field.")
            if unknown:
                continue
            submit = bool(item.get("submit", False))
            data = {k: v for k, v in item.items() if k != "submit"}
            try:
                with transaction.atomic():
                    self._apply_one(path, data, submit, ctx)
            except ServiceError as exc:
                config_report(ctx, path, exc)

    def _apply_one(self, path: str, data: dict, submit: bool, ctx: ConfigContext) -> None:
        code = data["loader_code"]
        reason = f"apply_config {ctx.source}"
        loader = Loader.objects.filter(loader_code=code).first()
        if loader is None:
            loader = services.loader_create(user=ctx.user, data=data, reason=reason)
            ctx.change(self.key, code, "created")
        else:
            edit = {k: v for k, v in data.items() if k != "loader_code"}
            changed = services.loader_changed_fields(loader=loader, data=edit)
            if changed:
                loader = services.loader_edit(user=ctx.user, loader=loader, data=edit, reason=reason)
            ctx.change(self.key, code, "changed" if changed else "unchanged", changed)
        draft = loader.open_version
        if submit and draft is not None and draft.state == "DRAFT":
            services.loader_version_submit(user=ctx.user, version=draft, comment=reason)
            ctx.change(self.key, code, "submitted")
