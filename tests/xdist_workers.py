"""Each pytest-xdist worker of CI's PostgreSQL pass gets a Redis database and a var/ directory of
its own, set before Django reads its settings: loaded with ``-p tests.xdist_workers`` (.ci/run).

pytest-django gives each worker a test database of its own (test_<name>_gw0, _gw1); Redis, the
broker and cache of the worker processes the tests start, and var/ it does not. (An xdist
``--tx popen//env:NAME=value`` cannot carry a URL: the spec is split at every "//".) REDIS_URL
names the first worker's database: gw0 uses it, gw1 the next one, and so on.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1…; unset in the controller
if _worker.startswith("gw") and os.environ.get("REDIS_URL"):
    _url = urlsplit(os.environ["REDIS_URL"])
    _first = int(_url.path.strip("/") or 0)
    os.environ["REDIS_URL"] = _url._replace(path=f"/{_first + int(_worker[2:])}").geturl()
    os.environ["ETL_MONITOR_VAR_DIR"] = f"var/test/{_worker}"
