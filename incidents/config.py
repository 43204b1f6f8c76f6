"""``detection_rules`` section of ``apply_config``: rules upserted by name through incidents.services."""

from __future__ import annotations

from functools import partial
from typing import Any

from etl_monitor.config import ConfigContext, config_upsert
from incidents import services
from incidents.models import DetectionRule


class DetectionRulesSection:
    """``detection_rules: [{name, kind, params, operator, threshold, window_seconds, severity, …}]``."""

    key = "detection_rules"
    order = 30

    def apply(self, value: Any, ctx: ConfigContext) -> None:
        if not isinstance(value, list):
            ctx.error(self.key, "Must be a list of rules (each a mapping with 'name').")
            return
        seen: dict[str, int] = {}
        for index, item in enumerate(value):
            path = f"{self.key}[{index}]"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
                ctx.error(f"{path}.name", "Each rule needs a name.")
                continue
            name = item["name"]
            if name in seen:
                ctx.error(f"{path}.name", f"Duplicate rule name {name!r} (also at {self.key}[{seen[name]}]).")
                continue
            seen[name] = index
            existing = DetectionRule.objects.filter(name=name).first()
            save = partial(services.rule_save, user=ctx.user, data=dict(item), rule=existing)
            config_upsert(ctx, section=self.key, key=name, path=path, existing=existing, save=save, snapshot=_snapshot)


def _snapshot(rule: DetectionRule | None) -> dict[str, Any]:
    if rule is None:
        return {}
    values = {
        f: getattr(rule, f) for f in services.RULE_FIELDS if f not in ("scope_loaders", "scope_tag", "scope_owner")
    }
    values["scope_loaders"] = sorted(rule.scope_loaders.values_list("loader_code", flat=True)) if rule.pk else []
    values["scope_tag"] = rule.scope_tag_id
    values["scope_owner"] = rule.scope_owner_id
    return values
