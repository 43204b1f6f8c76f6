"""Exports of loaders to a spreadsheet.

The file is written by ``importing.loaders_export``: the requester's field protection applied,
``connection_password`` never included, formula-like cells neutralised.
"""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet

from loaders import importing, selectors
from loaders.models import Loader

# Loaders read per query (with their tags and versions).
CHUNK = 1000


def loaders_export_now(*, user: AbstractBaseUser, loaders: QuerySet[Loader], file_format: str) -> bytes:
    """The file of ``loaders`` (any queryset of them), written while the caller waits."""
    # The list selector's versions are lean (a few columns): the export needs every contract field.
    chosen = selectors.loader_detail_list().filter(pk__in=loaders.values("pk")).order_by("loader_code")
    return importing.loaders_export(user=user, loaders=chosen.iterator(chunk_size=CHUNK), file_format=file_format)
