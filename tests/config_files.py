"""Applying a configuration file (``manage.py apply_config``) from a test, as an operator would."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command


def config_apply(tmp_path: Path, text: str, *args: str) -> str:
    """Write ``text`` to a YAML file and apply it (``args``: e.g. ``"--as", "ada-admin"``);
    returns what the command printed."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    out = StringIO()
    call_command("apply_config", str(path), *args, stdout=out, stderr=out)
    return out.getvalue()


def config_refused(tmp_path: Path, text: str, *args: str) -> str:
    """Apply ``text`` expecting the command to refuse it; returns its error output."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("apply_config", str(path), *args, stdout=StringIO(), stderr=err)
    return err.getvalue()
