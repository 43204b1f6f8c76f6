"""Admin autocomplete fields that redraw a refused form instead of answering 500.

When a form with errors is drawn again, Django's autocomplete widget looks up the posted value
as it came (``AutocompleteSelect.optgroups`` filters ``pk__in`` with it): "abc" or a number
beyond the key's range for an integer key raised there, so a typo became a server error. The
widgets here draw only the values the target field can hold; anything else simply shows as not
selected, and the form's own "Select a valid choice" error says what was wrong. A many-to-many
field's own check has the same gap (an integer beyond the key's range reached the database, an
OverflowError on SQLite): ``KeyCheckingModelMultipleChoiceField`` refuses such a value first. Every admin with
``autocomplete_fields`` uses ``SafeAutocompleteAdminMixin`` (tests/platform/test_admin_junk_input.py
checks each registered one).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib.admin.widgets import AutocompleteSelect, AutocompleteSelectMultiple
from django.core.exceptions import ValidationError
from django.db.models import Field
from django.http import HttpRequest


def _target_field(field: Field) -> Field:
    """The field of the related model the posted values name (its key, or ``to_field``)."""
    opts = field.remote_field.model._meta
    return opts.get_field(getattr(field.remote_field, "field_name", None) or opts.pk.name)


def values_the_key_can_hold(field: Field, values: Iterable[Any]) -> list[Any]:
    """``values`` without those the target field refuses (its type and, for integers, its range)."""
    target = _target_field(field)
    kept = []
    for value in values:
        try:
            target.clean(value, None)
        except ValidationError:
            continue
        kept.append(value)
    return kept


class KeyCheckingModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Refuses a value its key cannot hold as Django refuses "abc": invalid_pk_value."""

    def _check_values(self, value: Any) -> Any:
        opts = self.queryset.model._meta
        target = opts.get_field(self.to_field_name) if self.to_field_name else opts.pk
        for item in value:  # clean() has made sure it is a list or tuple
            if item in self.empty_values:
                continue
            try:
                target.clean(item, None)
            except ValidationError:
                raise ValidationError(
                    self.error_messages["invalid_pk_value"], code="invalid_pk_value", params={"pk": item}
                ) from None
        return super()._check_values(value)


class SafeAutocompleteSelect(AutocompleteSelect):
    def optgroups(self, name: str, value: list[Any], attr: Any = None) -> list[Any]:
        return super().optgroups(name, values_the_key_can_hold(self.field, value), attr)


class SafeAutocompleteSelectMultiple(AutocompleteSelectMultiple):
    def optgroups(self, name: str, value: list[Any], attr: Any = None) -> list[Any]:
        return super().optgroups(name, values_the_key_can_hold(self.field, value), attr)


class SafeAutocompleteAdminMixin:
    """Gives the admin's ``autocomplete_fields`` the widgets above and its many-to-many fields the
    checking form field (Django's own otherwise)."""

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            kwargs["widget"] = SafeAutocompleteSelect(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            kwargs["widget"] = SafeAutocompleteSelectMultiple(db_field, self.admin_site, using=kwargs.get("using"))
        kwargs.setdefault("form_class", KeyCheckingModelMultipleChoiceField)
        return super().formfield_for_manytomany(db_field, request, **kwargs)
