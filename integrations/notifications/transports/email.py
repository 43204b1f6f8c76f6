"""Email: the channel kind EMAIL, sent with Django's mail over SMTP (EMAIL_* settings)."""

from __future__ import annotations

import smtplib
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from email.utils import parseaddr
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.template.loader import render_to_string

from etl_monitor.metrics import Outcome, TargetService, http_client_call
from integrations.models import ChannelKind, Delivery
from integrations.notifications.payloads import Message
from integrations.notifications.transports import (
    Permanent,
    Transient,
    Transport,
    send_outcome,
    transport_register,
)
from integrations.text import one_line


def message_id(delivery: Delivery) -> str:
    """Stable per delivery, so a resend after an unknown outcome carries the same Message-ID."""
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "etl-monitor.local"
    return f"<delivery-{delivery.pk}.{delivery.key_digest}@{domain}>"


def smtp_outcome(exc: BaseException) -> Outcome | None:
    """SMTP's replies in the HTTP classes of ``http_client_request_duration_seconds``: a 5xx reply
    refuses what we sent for good (a recipient, our credentials) — ``client_error``; a 4xx reply is
    the server unable to take it now (busy, greylisting) — ``server_error``. Refused recipients
    count as ``send`` treats them: all refused for good, else deferred. No reply at all (refused
    connection, timeout): None."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in exc.recipients.values()]
        return Outcome.CLIENT_ERROR if all(code >= 500 for code in codes) else Outcome.SERVER_ERROR
    if isinstance(exc, smtplib.SMTPResponseException):
        return Outcome.CLIENT_ERROR if exc.smtp_code >= 500 else Outcome.SERVER_ERROR
    return None


def smtp_call(connection: Any) -> AbstractContextManager[Any]:
    """Measure sending over ``connection`` as a call to SMTP when it is one: Django's console and
    in-memory backends (development, tests) call nobody and draw no edge on the service map."""
    if isinstance(connection, SMTPBackend):
        return http_client_call(TargetService.SMTP, classify=smtp_outcome)
    return nullcontext()


@transport_register
class EmailTransport(Transport):
    """Django's mail (EMAIL_* settings): one message to all of a tier's recipients, a text and an
    HTML part, a Message-ID stable per delivery."""

    kind = ChannelKind.EMAIL
    test_prompt = "an email address (default: yours)"
    test_target_missing = "Say where to send the test: an email address (you have none of your own)."
    uses_admin_mail = True

    def targets(self, tier: dict[str, Any]) -> list[str]:
        recipients = [r for r in tier.get("recipients") or [] if r]
        return [",".join(sorted(recipients))] if recipients else []

    def tier_problems(self, tier: dict[str, Any]) -> dict[str, str]:
        if self.targets(tier) or tier.get("oncall"):  # routing adds the people on call to the recipients
            return {}
        return {
            "recipients": f"Channel {self.channel.name} sends email: give at least one recipient or on-call schedule."
        }

    def test_target(self, user: Any, tiers: list[dict[str, Any]]) -> str:
        return user.email if user is not None else ""

    def render(self, message: Message) -> dict[str, Any]:
        if message.is_test:
            return {
                "subject": "[TEST] ETL Monitor test notification",
                "text": message.text + "\n",
                "html": "",
                "severity": "TEST",
            }
        ctx = message.context
        template_ctx = {
            "incident": ctx,
            "purpose": message.purpose,
            "headline": message.headline,
            "follow_up": message.follow_up,
        }
        return {
            "subject": one_line(f"[{ctx['severity']}] {message.headline}{ctx['title']}"),
            "text": render_to_string("notifications/incident_email.txt", template_ctx),
            "html": render_to_string("notifications/incident_email.html", template_ctx),
            "severity": ctx["severity"],
        }

    def send_many(self, deliveries: list[Delivery]) -> dict[int, str | Exception]:
        """A few SMTP connections side by side, each sending its share of the batch in turn."""
        shares = max(1, min(len(deliveries) // 10, settings.NOTIFY_SMTP_CONNECTIONS))
        if shares == 1:
            return self._send_over_one_connection(deliveries)
        outcomes: dict[int, str | Exception] = {}
        with ThreadPoolExecutor(max_workers=shares) as pool:
            for part in pool.map(self._send_over_one_connection, [deliveries[i::shares] for i in range(shares)]):
                outcomes.update(part)
        return outcomes

    def _send_over_one_connection(self, deliveries: list[Delivery]) -> dict[int, str | Exception]:
        """One SMTP connection for these messages; a connection that breaks is opened again for the next."""
        connection = get_connection(timeout=settings.EMAIL_TIMEOUT)
        outcomes: dict[int, str | Exception] = {}
        try:
            for delivery in deliveries:
                outcome = send_outcome(lambda d: self.send(d, connection=connection), delivery)
                outcomes[delivery.pk] = outcome
                if isinstance(outcome, Transient) and outcome.reason.startswith("SMTP server unreachable"):
                    connection.close()
        finally:
            connection.close()
        return outcomes

    def send(self, delivery: Delivery, connection: Any = None) -> str:
        payload = delivery.payload
        connection = connection or get_connection(timeout=settings.EMAIL_TIMEOUT)
        recipients = [address for address in delivery.target.split(",") if address]
        msg = EmailMultiAlternatives(
            # One line whatever the payload says: a CR or LF makes Django refuse the header, and a
            # payload stored before titles were cleaned would otherwise never be sent.
            subject=one_line(payload["subject"]),
            body=payload["text"],
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=recipients,
            headers={
                "Message-ID": message_id(delivery),
                "X-ETL-Monitor-Incident": str(delivery.incident_id or ""),
                "X-ETL-Monitor-Severity": payload.get("severity", ""),
            },
            connection=connection,
        )
        if payload.get("html"):
            msg.attach_alternative(payload["html"], "text/html")
        try:
            with smtp_call(connection):
                msg.send()
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {code for code, _msg in exc.recipients.values()}
            if all(code >= 500 for code in codes):
                raise Permanent(f"recipient refused: {', '.join(exc.recipients)}") from exc
            raise Transient(f"recipient deferred: {', '.join(exc.recipients)}") from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise Permanent(f"SMTP authentication failed ({exc.smtp_code})") from exc
        except smtplib.SMTPResponseException as exc:
            reason = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:300]
            if exc.smtp_code >= 500:
                raise Permanent(reason) from exc
            raise Transient(reason) from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused connection, timeout, disconnect
            raise Transient(f"SMTP server unreachable: {type(exc).__name__}: {exc}"[:300]) from exc
        return message_id(delivery)
