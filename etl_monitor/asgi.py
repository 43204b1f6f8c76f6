import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "etl_monitor.settings")
application = get_asgi_application()

from etl_monitor.checks import platform_refuse_to_start  # noqa: E402 - needs configured settings

platform_refuse_to_start()
