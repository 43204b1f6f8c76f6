"""Notification channels, routing rules and the delivery outbox in the admin.

Writes go through the services (``channels.channel_save``, ``rules.notification_rule_save``,
``outbox.channel_test``, ``outbox.delivery_retry``), so the admin validates, checks roles and
keeps history exactly like the API and ``apply_config``. A channel's or data source's secret is
write-only on every page and for every role, Admins included (``WriteOnlySecretAdminMixin``): the
form never renders it, an empty input keeps the stored one, and pages say only whether one is set.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from etl_monitor.admin import ServiceErrorMessagesMixin
from etl_monitor.admin_input import KeyCheckingAdminMixin
from etl_monitor.crypto import secret_status, secret_undecryptable
from etl_monitor.errors import InvalidInput, ServiceError
from etl_monitor.history_admin import ReadOnlyHistoryAdmin
from incidents.admin import IncidentPageAction, incident_inline_register, incident_page_action_register
from incidents.models import Incident
from integrations.jira import JiraAuth, connection_check, jira_configured, jira_personal_access_token
from integrations.models import (
    Capture,
    Channel,
    ChannelKind,
    DataSource,
    Delivery,
    DeliveryStatus,
    JiraSettings,
    JiraWebhookReceipt,
    NotificationRule,
)
from integrations.notifications import channels, outbox, rules
from integrations.notifications.routing import incident_escalate, incident_escalation_possible
from integrations.notifications.transports import transport_for
from integrations.selectors import delivery_payload_visible
from integrations.sources.captures import capture_run
from integrations.sources.clients import source_check
from integrations.sources.services import auth_problems, capture_save, data_source_save
from loaders.models import Severity
from oncall.models import Schedule

CHANNEL_FIELDS = ("name", "kind", "enabled", "url", "secret")


def _add_service_errors(form: forms.Form, exc: InvalidInput) -> None:
    """Put a service's errors next to the fields they name (``escalation_tiers[1].channels`` → the
    ``escalation_tiers`` field, with the full name in the message)."""
    for name, problems in exc.errors.items():
        field = re.split(r"[.\[]", name, maxsplit=1)[0]
        text = "; ".join(problems)
        if field in form.fields:
            form.add_error(field, text if field == name else f"{name}: {text}")
        else:
            form.add_error(None, f"{name}: {text}")


class WriteOnlySecretAdminMixin:
    """The model's ``secret`` is write-only on every admin page, for every role.

    Django shows each field of a page the user may only *view* as read-only text, with its value
    (decrypted, for an encrypted field); simple-history's "history/<id>" page renders the same
    fieldsets. So ``secret`` is left out of any page whose form will not be saved by this user,
    and ``secret_status`` says whether one is stored. Who may change the object gets a password
    input that is never pre-filled (the forms drop the initial value)."""

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list:
        sets = super().get_fieldsets(request, obj)
        writable = self.has_change_permission(request, obj) if obj is not None else self.has_add_permission(request)
        if writable:
            return sets
        return [(title, {**options, "fields": _without_secret(options["fields"])}) for title, options in sets]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # A read-only "secret" would be printed in clear: whatever a subclass declares, it is not.
        fields = super().get_readonly_fields(request, obj)
        return tuple(name for name in fields if name != "secret")

    @admin.display(description="stored secret")
    def secret_status(self, obj: Any) -> str:
        return secret_status(obj.secret) if obj is not None and obj.pk else "not set"


SECRET_INPUTS = ("secret", "clear_secret")


def _without_secret(fields: Any) -> tuple:
    """A fieldset's fields without the secret's inputs (rows of several fields are tuples)."""
    kept: list[Any] = []
    for entry in fields:
        if isinstance(entry, (list, tuple)):
            row = tuple(name for name in entry if name not in SECRET_INPUTS)
            if row:
                kept.append(row)
        elif entry not in SECRET_INPUTS:
            kept.append(entry)
    return tuple(kept)


# --- channels ---------------------------------------------------------------------------


class ChannelForm(forms.ModelForm):
    url = forms.URLField(required=False, assume_scheme="https", help_text="Generic webhook: where to POST.")
    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=(
            "Slack bot: a bot token (xoxb-…; none = SLACK_BOT_TOKEN). Slack incoming webhook: its URL. "
            "Generic webhook: the signing secret (optional). Jira with JIRA_AUTH=token: the personal access "
            "token (none = JIRA_PERSONAL_ACCESS_TOKEN). Stored encrypted and never shown: "
            "leave empty to keep the stored secret."
        ),
    )
    clear_secret = forms.BooleanField(
        required=False,
        label="Clear the stored secret",
        help_text="Removes the stored secret. A channel whose kind needs one then cannot send until it gets a new one.",
    )
    user: Any = None  # set per request by ChannelAdmin.get_form

    class Meta:
        model = Channel
        fields = CHANNEL_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("secret", None)  # the stored secret never reaches the page, not even hidden

    def channel_data(self) -> dict[str, Any]:
        data = {name: self.cleaned_data[name] for name in CHANNEL_FIELDS if name in self.cleaned_data}
        if self.cleaned_data.get("clear_secret"):
            data["secret"] = None  # channel_save: None clears
        return data

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("clear_secret") and cleaned.get("secret"):
            self.add_error("clear_secret", "Either type a new secret or clear the stored one, not both.")
        if self.errors:
            return cleaned
        # channel_save is the only validation there is: run it and roll it back, so its errors
        # appear on the fields; ChannelAdmin.save_model then runs it for real.
        stored = Channel.objects.get(pk=self.instance.pk) if self.instance.pk else None
        try:
            with transaction.atomic():
                channels.channel_save(user=self.user, data=self.channel_data(), channel=stored)
                transaction.set_rollback(True)
        except InvalidInput as exc:
            _add_service_errors(self, exc)
        except ServiceError as exc:
            self.add_error(None, exc.message)
        return cleaned


@admin.register(Channel)
class ChannelAdmin(ServiceErrorMessagesMixin, WriteOnlySecretAdminMixin, ReadOnlyHistoryAdmin):
    form = ChannelForm
    list_display = ("name", "kind", "enabled", "healthy", "unhealthy_reason", "last_success_at")
    list_filter = ("kind", "enabled", "healthy")
    search_fields = ("name",)
    readonly_fields = (
        "secret_status",
        "cannot_send",
        "healthy",
        "unhealthy_reason",
        "unhealthy_since",
        "last_success_at",
        "test",
    )
    fieldsets = ((None, {"fields": ("name", "kind", "enabled", "url", "secret", "clear_secret", "secret_status")}),)
    actions = ("send_test",)

    def get_fieldsets(self, request: HttpRequest, obj: Channel | None = None) -> list:
        sets = list(super().get_fieldsets(request, obj))  # without the secret inputs for who cannot save
        if obj is not None:
            health = ("cannot_send", "healthy", "unhealthy_reason", "unhealthy_since", "last_success_at")
            sets.append(("Health", {"fields": health}))
            if self.has_change_permission(request, obj):
                sets.append(("Test", {"fields": ("test",)}))
        return sets

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"user": request.user})

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, through channel_delete's checks
        return actions

    @admin.display(description="can send")
    def cannot_send(self, obj: Channel) -> str:
        problem = channels.channel_configured(obj)
        return f"No: {problem}" if problem else "Yes"

    @admin.display(description="send a test notification")
    def test(self, obj: Channel) -> str:
        # A box where the transport asks for a target (email, the Slack bot), showing the default.
        prompt = transport_for(obj).test_prompt
        placeholder = prompt and (channels.channel_test_target(obj) or prompt)
        target = (
            format_html('<input type="text" name="_test_target" placeholder="{}" style="width:20em"> ', placeholder)
            if placeholder
            else ""
        )
        return format_html(
            '{}<button type="submit" class="button" formaction="{}" formnovalidate>Send a test notification</button>'
            '<p class="help">Sends now, with the saved settings (save your changes first).</p>',
            target,
            reverse("admin:integrations_channel_test", args=[obj.pk]),
        )

    def save_model(self, request: HttpRequest, obj: Channel, form: ChannelForm, change: bool) -> None:
        stored = Channel.objects.get(pk=obj.pk) if change else None
        obj.pk = channels.channel_save(user=request.user, data=form.channel_data(), channel=stored).pk

    def delete_model(self, request: HttpRequest, obj: Channel) -> None:
        channels.channel_delete(user=request.user, channel=obj)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(reverse("admin:integrations_channel_change", args=[object_id]))

    def _send_test(self, request: HttpRequest, channel: Channel, target: str = "") -> None:
        try:
            delivery = outbox.channel_test(user=request.user, channel=channel, target=target)
        except InvalidInput as exc:
            problems = "; ".join(m for msgs in exc.errors.values() for m in msgs)
            messages.error(request, f"Test of {channel.name} not sent: {problems}")
            return
        except ServiceError as exc:
            messages.error(request, f"Test of {channel.name} not sent: {exc.message}")
            return
        if delivery.status == DeliveryStatus.SENT:
            messages.success(request, f"{channel.name}: test notification sent to {delivery.target}.")
        elif delivery.status == DeliveryStatus.GAVE_UP:
            messages.error(request, f"{channel.name}: the test notification failed: {delivery.last_error}")
        elif delivery.status == DeliveryStatus.FAILED:
            messages.warning(
                request, f"{channel.name}: the test notification failed for now ({delivery.last_error}); it will retry."
            )
        else:
            messages.info(request, f"{channel.name}: the test notification is queued (delivery #{delivery.pk}).")

    @admin.action(description="Send a test notification", permissions=["change"])
    def send_test(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        for channel in queryset:
            self._send_test(request, channel)

    def test_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        channel = get_object_or_404(Channel, pk=pk)
        self._send_test(request, channel, request.POST.get("_test_target", "").strip())
        return HttpResponseRedirect(reverse("admin:integrations_channel_change", args=[pk]))

    def get_urls(self) -> list:
        return [
            path(
                "<int:pk>/test/",
                self.admin_site.admin_view(require_POST(self.test_view)),
                name="integrations_channel_test",
            ),
            *super().get_urls(),
        ]


# --- notification rules --------------------------------------------------------------------


class NotificationRuleForm(forms.ModelForm):
    channels = forms.MultipleChoiceField(
        choices=(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Where the first notification goes.",
    )
    recipients = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Email addresses, one per line (or separated by commas).",
    )
    oncall = forms.MultipleChoiceField(
        choices=(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="On-call schedules",
        help_text="Whoever is on call in these schedules is told (SMS, voice call, email); nobody on call → next tier.",
    )
    escalation_tiers = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=(
            "Who next when nobody acknowledges within the escalation timeout, in order, e.g. "
            '[{"channels": ["voice"], "oncall": ["data-platform"]}, {"channels": ["email"], '
            '"recipients": ["cto@company.com"]}]. Keys: channels, recipients, slack_channel, oncall.'
        ),
    )

    class Meta:
        model = NotificationRule
        fields = rules.RULE_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = {c.name: f"{c.name} — {c.get_kind_display()}" for c in Channel.objects.all()}
        for stored in self.instance.channels or []:
            names.setdefault(stored, f"{stored} (no such channel)")
        self.fields["channels"].choices = list(names.items())
        schedules = dict(Schedule.objects.values_list("slug", "name"))
        for stored in self.instance.oncall or []:
            schedules.setdefault(stored, f"{stored} (no such schedule)")
        self.fields["oncall"].choices = [(slug, f"{name} ({slug})") for slug, name in schedules.items()]
        if not self.is_bound:
            self.initial["recipients"] = "\n".join(self.instance.recipients or [])
            self.initial["escalation_tiers"] = self.instance.escalation_tiers or []

    def clean_recipients(self) -> list[str]:
        return [r for r in re.split(r"[\s,;]+", self.cleaned_data.get("recipients") or "") if r]

    def clean_escalation_tiers(self) -> Any:
        value = self.cleaned_data.get("escalation_tiers")
        return [] if value in (None, "") else value

    def rule_data(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in rules.RULE_FIELDS if name in self.cleaned_data}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        probe = NotificationRule.objects.get(pk=self.instance.pk) if self.instance.pk else None
        try:
            rules.notification_rule_check(data=self.rule_data(), rule=probe)
        except InvalidInput as exc:
            # A field Django already refused is not reported twice.
            _add_service_errors(self, InvalidInput({k: v for k, v in exc.errors.items() if k not in self.errors}))
        return cleaned


@admin.register(NotificationRule)
class NotificationRuleAdmin(ServiceErrorMessagesMixin, KeyCheckingAdminMixin, ReadOnlyHistoryAdmin):
    form = NotificationRuleForm
    list_display = (
        "severity",
        "team",
        "tag",
        "channel_list",
        "slack_channel",
        "escalation_timeout",
        "enabled",
    )
    list_filter = ("severity", "enabled", "team", "tag")
    list_select_related = ("team", "tag")
    autocomplete_fields = ("team", "tag")
    fieldsets = (
        ("Which incidents", {"fields": ("severity", "team", "tag", "enabled")}),
        ("Who is told first", {"fields": ("channels", "recipients", "slack_channel", "oncall")}),
        (
            "Escalation and reminders",
            {"fields": ("escalation_timeout", "escalation_tiers", "escalation_repeat", "repeat_interval")},
        ),
    )

    @admin.display(description="channels")
    def channel_list(self, obj: NotificationRule) -> str:
        return ", ".join(obj.channels or []) or "—"

    def save_model(self, request: HttpRequest, obj: NotificationRule, form: NotificationRuleForm, change: bool) -> None:
        stored = NotificationRule.objects.get(pk=obj.pk) if change else None
        obj.pk = rules.notification_rule_save(user=request.user, data=form.rule_data(), rule=stored).pk

    def delete_model(self, request: HttpRequest, obj: NotificationRule) -> None:
        rules.notification_rule_delete(user=request.user, rule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[NotificationRule]) -> None:
        for rule in queryset:
            rules.notification_rule_delete(user=request.user, rule=rule)


# --- deliveries (the outbox) ----------------------------------------------------------------


class DeliveryInline(admin.TabularInline):
    """The messages sent (or still being sent) about an incident, read-only, on the incident's page."""

    model = Delivery
    fields = ("channel", "purpose", "target", "status", "attempts", "last_error", "sent_at")
    readonly_fields = fields
    ordering = ("created_at", "id")
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "notifications"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        return super().get_queryset(request).select_related("channel")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


incident_inline_register(DeliveryInline)


def _escalate_now(user: Any, incident: Incident) -> str:
    tier = incident_escalate(user=user, incident=incident, source="the incident page")
    return f"Incident #{incident.pk}: escalated, tier {tier} of its notification rule is notified."


incident_page_action_register(
    IncidentPageAction(
        name="escalate",
        label="Escalate now",
        title="Notify the next tier of its notification rule now instead of at the escalation timeout",
        allowed=lambda user, incident: (
            user.has_perm("incidents.change_incident") and incident_escalation_possible(incident)
        ),
        run=_escalate_now,
    )
)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """Read-only: deliveries are written by notify; people only retry the ones that failed."""

    list_display = (
        "id",
        "incident_link",
        "channel",
        "purpose",
        "target",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "sent_at",
        "possible_duplicate",
    )
    list_filter = ("status", "channel", "purpose")
    search_fields = ("target", "=incident__id")
    search_help_text = "Target contains the text, or the incident number is exactly it."
    list_select_related = ("incident", "channel")
    actions = ("retry",)
    # The page of one delivery: the stored payload is shown through the reader's field policy
    # (``payload_shown``), never as the raw field; nor its digest, which would confirm a guess
    # of a value masked in it.
    fields = (
        "incident",
        "event",
        "channel",
        "purpose",
        "target",
        "tier",
        "key",
        "root",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "attempt_started_at",
        "lease_until",
        "sent_at",
        "external_id",
        "possible_duplicate",
        "payload_shown",
    )
    readonly_fields = ("payload_shown",)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Delivery | None:
        delivery = super().get_object(request, object_id, from_field)
        if delivery is not None:
            # ModelAdmin instances are shared between requests: the reader's view of the payload
            # travels on the object, not on the admin.
            delivery.payload_visible = delivery_payload_visible(user=request.user, delivery=delivery)
        return delivery

    @admin.display(description="payload (what was sent)")
    def payload_shown(self, obj: Delivery) -> str:
        shown = getattr(obj, "payload_visible", None)  # absent: nothing, rather than the raw payload
        # Wrapped: an email's text and HTML are single long JSON strings that ran past the page.
        text = format_html(
            '<pre style="white-space: pre-wrap; overflow-wrap: anywhere">{}</pre>',
            json.dumps(shown, indent=2, ensure_ascii=False, default=str),
        )
        if shown is not None and shown != obj.payload:
            # Say so, lest the reader take the masks for what the recipient got.
            return format_html(
                '{}<p class="help">Parts are masked under today\'s field protection; '
                "the message as sent holds them.</p>",
                text,
            )
        return text

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the outbox is the record of what was sent; retry is the only action

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.change_delivery")

    @admin.display(description="incident", ordering="incident_id")
    def incident_link(self, obj: Delivery) -> str:
        if obj.incident_id is None:
            return "—"
        url = reverse("admin:incidents_incident_change", args=[obj.incident_id])
        return format_html('<a href="{}">#{}</a>', url, obj.incident_id)

    @admin.action(description="Retry selected deliveries", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        done = 0
        for delivery in queryset:
            try:
                outbox.delivery_retry(user=request.user, delivery=delivery)
                done += 1
            except ServiceError as exc:
                messages.warning(request, f"#{delivery.pk}: {exc.message}")
        if done:
            messages.success(request, f"{done} delivery(ies) will be sent again.")


# --- Jira ----------------------------------------------------------------------------------


class JiraSettingsForm(forms.ModelForm):
    class Meta:
        model = JiraSettings
        fields = (
            "severities",
            "issue_type",
            "priorities",
            "labels",
            "correlation_field",
            "done_transition",
            "reopen_transition",
            "reopen_window_seconds",
            "refire_comment_seconds",
        )

    def clean_severities(self) -> list[str]:
        value = self.cleaned_data["severities"]
        if not isinstance(value, list) or not set(value) <= set(Severity.values):
            raise forms.ValidationError(f"A list of severities among {', '.join(Severity.values)}.")
        return value

    def clean_priorities(self) -> dict[str, str]:
        value = self.cleaned_data["priorities"]
        if not isinstance(value, dict) or not set(value) <= set(Severity.values):
            raise forms.ValidationError('An object from severity to Jira priority, e.g. {"CRITICAL": "Highest"}.')
        if not all(isinstance(v, str) and v for v in value.values()):
            raise forms.ValidationError("Every priority is a Jira priority name.")
        return value

    def clean_labels(self) -> list[str]:
        value = self.cleaned_data["labels"]
        if not isinstance(value, list) or not all(isinstance(v, str) and v and " " not in v for v in value):
            raise forms.ValidationError("A list of labels without spaces (Jira labels cannot contain spaces).")
        return value


@admin.register(JiraSettings)
class JiraSettingsAdmin(ReadOnlyHistoryAdmin):
    """One row: how incidents become tickets. The connection comes from JIRA_* settings."""

    form = JiraSettingsForm
    readonly_fields = ("connection", "test")
    fieldsets = (
        ("Connection (environment)", {"fields": ("connection", "test")}),
        ("Tickets", {"fields": ("severities", "issue_type", "priorities", "labels", "correlation_field")}),
        (
            "Lifecycle",
            {"fields": ("done_transition", "reopen_transition", "reopen_window_seconds", "refire_comment_seconds")},
        ),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:integrations_jirasettings_change", args=[JiraSettings.current().pk]))

    @admin.display(description="connection")
    def connection(self, obj: JiraSettings) -> str:
        """The JIRA_* settings as they are, credentials only as set or not (never their value)."""
        problem = jira_configured()
        if settings.JIRA_AUTH == JiraAuth.TOKEN:
            channel = Channel.objects.filter(kind=ChannelKind.JIRA).order_by("pk").first()
            stored = channel is not None and bool(channel.secret) and not secret_undecryptable(channel.secret)
            where = "jira channel" if stored else "JIRA_PERSONAL_ACCESS_TOKEN"
            token = f"set ({where})" if jira_personal_access_token(channel) else "not set"
            sign_in = format_html("sign-in personal access token (Bearer) · token {}", token)
        else:
            sign_in = format_html(
                "sign-in basic · user {} · API token {}",
                settings.JIRA_USERNAME or "—",
                "set" if settings.JIRA_API_TOKEN else "not set",
            )
        return format_html(
            "{}<br>URL {} · project {} · {} · webhook secret {}",
            "Off: " + problem if problem else "On",
            settings.JIRA_BASE_URL or "—",
            settings.JIRA_PROJECT or "—",
            sign_in,
            "set" if settings.JIRA_WEBHOOK_SECRET else "not set",
        )

    @admin.display(description="test")
    def test(self, obj: JiraSettings) -> str:
        return format_html(
            '<button type="submit" class="button" formaction="{}" formnovalidate>Test connection</button>'
            '<p class="help">Checks the server, the credentials, the project, the issue type, the correlation '
            "field and the done transition, and says what is wrong.</p>",
            reverse("admin:integrations_jirasettings_test"),
        )

    def test_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        for name, ok, detail in connection_check():
            (messages.success if ok else messages.error)(request, f"{name}: {detail}")
        return HttpResponseRedirect(reverse("admin:integrations_jirasettings_change", args=[JiraSettings.current().pk]))

    def get_urls(self) -> list:
        return [
            path(
                "test/", self.admin_site.admin_view(require_POST(self.test_view)), name="integrations_jirasettings_test"
            ),
            *super().get_urls(),
        ]


@admin.register(JiraWebhookReceipt)
class JiraWebhookReceiptAdmin(admin.ModelAdmin):
    """What Jira sent us and what it changed (read-only)."""

    list_display = ("received_at", "event", "issue_key", "outcome")
    list_filter = ("event",)
    search_fields = ("issue_key",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- data sources ----------------------------------------------------------------------------


class DataSourceForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Password, bearer token or API key; leave empty to keep the stored one. Never shown again.",
    )
    clear_secret = forms.BooleanField(
        required=False,
        label="Clear the stored secret",
        help_text="Removes the stored secret; set authentication to None in the same change.",
    )

    class Meta:
        model = DataSource
        fields = ("name", "kind", "url", "auth", "username", "secret", "verify_tls", "timeout_seconds", "enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial["secret"] = ""  # the stored secret never reaches the page

    def clean_secret(self) -> str:
        secret = self.cleaned_data.get("secret") or ""
        if self.data.get(self.add_prefix("clear_secret")):
            return secret  # cleared (clean() refuses a new one given as well)
        return secret or (self.instance.secret if self.instance.pk else "")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("clear_secret") and data.get("secret"):
            self.add_error("clear_secret", "Either type a new secret or clear the stored one, not both.")
            return data
        problems = auth_problems(
            data.get("kind", ""), data.get("auth", ""), data.get("username", ""), data.get("secret", "")
        )
        if data.get("clear_secret") and "secret" in problems:
            problems.pop("secret")
            problems["clear_secret"] = ["This authentication needs a secret: to clear it, set authentication to None."]
        for field, errors in problems.items():
            for error in errors:
                self.add_error(field, error)
        return data


@admin.register(DataSource)
class DataSourceAdmin(WriteOnlySecretAdminMixin, ReadOnlyHistoryAdmin):
    """External systems detection rules query. Only admins may add or change one: the server
    fetches its URL."""

    form = DataSourceForm
    list_display = ("name", "kind", "url", "enabled", "last_success_at", "last_error_at", "last_error")
    list_filter = ("kind", "enabled")
    readonly_fields = ("secret_status", "last_success_at", "last_error", "last_error_at")
    fieldsets = (
        (None, {"fields": ("name", "kind", "url", "enabled")}),
        ("Authentication", {"fields": ("auth", "username", "secret", "clear_secret", "secret_status", "verify_tls")}),
        ("Calls", {"fields": ("timeout_seconds",)}),
        ("Health", {"fields": ("last_success_at", "last_error_at", "last_error")}),
    )
    actions = ("test_connection",)

    def save_model(self, request: HttpRequest, obj: DataSource, form: DataSourceForm, change: bool) -> None:
        # The form set the fields (a cleared secret is already empty on ``obj``).
        data_source_save(
            user=request.user, data={}, source=obj, secret="", secret_clear=form.cleaned_data["clear_secret"]
        )

    @admin.action(description="Test the connection", permissions=["change"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[DataSource]) -> None:
        for source in queryset:
            ok, detail = source_check(source)
            (messages.success if ok else messages.error)(request, f"{source.name}: {detail}")


# --- statistics capture ----------------------------------------------------------------------


@admin.register(Capture)
class CaptureAdmin(KeyCheckingAdminMixin, ReadOnlyHistoryAdmin):
    """Statistics capture definitions: a query against a data source whose values are stored as
    signals of a loader every 5 minutes. Only admins may add or change one (the query runs on the
    server); every role sees them and the signals they store."""

    list_display = ("name", "loader", "source", "metric_type", "enabled", "last_bucket_at", "last_stored", "problem")
    list_filter = ("enabled", "source_kind", "metric_type", "system")
    search_fields = ("name", "description", "query", "loader__loader_code")
    list_select_related = ("loader",)
    autocomplete_fields = ("loader",)

    def save_model(self, request: HttpRequest, obj: Capture, form: Any, change: bool) -> None:
        capture_save(user=request.user, data={}, capture=obj)  # the form set the fields

    readonly_fields = ("system", "last_run_at", "last_bucket_at", "last_stored", "last_error")
    actions = ("capture_now",)
    fieldsets = (
        (None, {"fields": ("name", "description", "loader", "enabled", "system")}),
        (
            "What to capture",
            {"fields": ("source", "source_kind", "query", "key_label", "key_prefix", "metric_type")},
        ),
        ("Elasticsearch", {"fields": ("index", "time_field"), "classes": ("collapse",)}),
        ("Last run", {"fields": ("last_run_at", "last_bucket_at", "last_stored", "last_error")}),
    )

    @admin.display(description="Last problem")
    def problem(self, obj: Capture) -> str:
        return obj.last_error[:120]

    @admin.action(description="Capture now (the bucket that just ended)", permissions=["change"])
    def capture_now(self, request: HttpRequest, queryset: QuerySet[Capture]) -> None:
        for capture in queryset.select_related("loader"):
            result = capture_run(capture)
            level = messages.success if result.status == "stored" else messages.warning
            level(request, f"{capture.name}: {result.summary()}")
