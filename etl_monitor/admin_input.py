"""Values the admin is given that name rows: junk there is the user's mistake, never a 500.

Autocomplete fields. When a form with errors is drawn again, Django's autocomplete widget looks up
the posted value as it came (``AutocompleteSelect.optgroups`` filters ``pk__in`` with it): "abc" or
a number beyond the key's range for an integer key raised there, so a typo became a server error.
The widgets here draw only the values the target field can hold; anything else simply shows as not
selected, and the form's own "Select a valid choice" error says what was wrong.

Many-to-many fields. Django's own check has the same gap for an integer beyond the key's range (it
reached the database: an OverflowError on SQLite, the default database); ``KeyCheckingModelMultipleChoiceField``
refuses such a value first, as Django refuses "abc". Every admin of ours with autocomplete or
many-to-many fields uses ``KeyCheckingAdminMixin``.

Records nobody edits. Runs, signals, API tokens and the approval queue are written by services
only; ``ViewOnlyAdmin`` offers no add, change or delete page for them (their actions still run).

Object ids in URLs. Django's own change and delete pages treat "abc" as a missing object; pages that
look the id up themselves (simple-history's history pages, our change views' extra context) ask
``key_holds`` first. tests/platform/test_admin_junk_input.py checks every registered admin.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelect, AutocompleteSelectMultiple
from django.core.exceptions import ValidationError
from django.db.models import Field
from django.http import HttpRequest


def _target_field(field: Field) -> Field:
    """The field of the related model the posted values name (its key, or ``to_field``)."""
    opts = field.remote_field.model._meta
    return opts.get_field(getattr(field.remote_field, "field_name", None) or opts.pk.name)


def key_holds(field: Field, value: Any) -> bool:
    """Whether ``field`` (a key) can hold ``value``: its type and, for integers, its range."""
    try:
        field.clean(value, None)
    except ValidationError:
        return False
    return True


def values_the_key_can_hold(field: Field, values: Iterable[Any]) -> list[Any]:
    """``values`` without those the related model's key (or ``to_field``) cannot hold."""
    target = _target_field(field)
    return [value for value in values if key_holds(target, value)]


class KeyCheckingModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Refuses a value its key cannot hold as Django refuses "abc": invalid_pk_value."""

    def _check_values(self, value: Any) -> Any:
        opts = self.queryset.model._meta
        target = opts.get_field(self.to_field_name) if self.to_field_name else opts.pk
        for item in value:  # clean() has made sure it is a list or tuple
            if item not in self.empty_values and not key_holds(target, item):
                raise ValidationError(
                    self.error_messages["invalid_pk_value"], code="invalid_pk_value", params={"pk": item}
                )
        return super()._check_values(value)


class SafeAutocompleteSelect(AutocompleteSelect):
    def optgroups(self, name: str, value: list[Any], attr: Any = None) -> list[Any]:
        return super().optgroups(name, values_the_key_can_hold(self.field, value), attr)


class SafeAutocompleteSelectMultiple(AutocompleteSelectMultiple):
    def optgroups(self, name: str, value: list[Any], attr: Any = None) -> list[Any]:
        return super().optgroups(name, values_the_key_can_hold(self.field, value), attr)


class KeyCheckingAdminMixin:
    """Related fields that check the keys they are given: ``autocomplete_fields`` get the widgets
    above, many-to-many fields the checking form field (Django's own otherwise)."""

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            kwargs["widget"] = SafeAutocompleteSelect(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            kwargs["widget"] = SafeAutocompleteSelectMultiple(db_field, self.admin_site, using=kwargs.get("using"))
        kwargs.setdefault("form_class", KeyCheckingModelMultipleChoiceField)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class ViewOnlyAdmin(admin.ModelAdmin):
    """An admin that shows records and takes no input for them: no add, change or delete."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
