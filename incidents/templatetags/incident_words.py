"""Template filters for the incident pages: durations as people say them."""

from __future__ import annotations

from django import template

from incidents.wording import duration_words

register = template.Library()


@register.filter(name="duration_words")
def duration_words_filter(seconds: float | None) -> str:
    """``{{ run.duration_seconds|duration_words }}`` → "25 min"."""
    return duration_words(seconds)
