"""The image's HEALTHCHECK: GET /healthz on the web port; exit 0 when it answers 200.

Python, not curl: the slim image has no curl, and adding one only for this would grow it."""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('WEB_PORT', '8000')}/healthz"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as exc:
    print(f"healthcheck: {url}: {exc}", file=sys.stderr)
    sys.exit(1)
