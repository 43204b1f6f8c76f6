"""File downloads (exports, templates) with the right type and a dated file name."""

from django.http import HttpResponse
from django.utils import timezone

CONTENT_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}


def file_response(content: bytes, file_format: str, stem: str) -> HttpResponse:
    response = HttpResponse(content, content_type=CONTENT_TYPES[file_format])
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="{stem}-{stamp}.{file_format}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
