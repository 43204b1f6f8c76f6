"""Platform-wide Prometheus metrics (HTTP requests); domain metrics live with their app."""

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "django_http_requests", "HTTP requests answered, by method, view and status.", ["method", "view", "status"]
)
HTTP_REQUEST_SECONDS = Histogram(
    "django_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and view.",
    ["method", "view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
