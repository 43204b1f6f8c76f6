"""The admin banner: unhealthy notification channels, shown to staff on every admin page."""

from typing import Any

from django.http import HttpRequest


def channel_health(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated and user.is_staff) or not request.path.startswith("/admin/"):
        return {}
    from integrations.models import Channel

    return {
        "unhealthy_channels": list(
            Channel.objects.filter(healthy=False, enabled=True).only("pk", "name", "unhealthy_reason")
        )
    }
