import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "etl_monitor.settings")
application = get_wsgi_application()

from etl_monitor.checks import settings_refuse_insecure  # noqa: E402 - needs configured settings

settings_refuse_insecure()
