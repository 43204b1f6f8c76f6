"""Outside text reaches Slack and Jira as text, never as markup: a loader name, a rule's message and
suggestion, a correlation id or a person's comment cannot ping a channel (``<!channel>``), disguise
a link (``<https://evil|Reset your password>``, ``[Reset your password|https://evil]``), load an
image (``!https://evil/p.png!``) or open a macro. Our own links keep working.

Each test drives the real path — detection opens the incident, the worker sends it with the real
slack_sdk / jira clients — and reads what the fake Slack (tests/integrations/conftest.py) or the
fake Jira (tests/integrations/jira_fake.py) received.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.utils import timezone

from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, Incident
from incidents.services import incident_comment
from loaders import services as loader_services
from loaders.models import Loader
from signals_app.models import Signal
from tests.incidents.conftest import add_signals
from tests.integrations import test_jira
from tests.integrations.conftest import FakeSlack
from tests.integrations.jira_fake import FakeJira

jira = test_jira.jira  # a fake Jira site with project OPS, and ETL Monitor configured for it

PING = "<!channel>"
HERE = "<!here>"
SLACK_LINK = "<https://evil.example/login|Reset your password>"
WIKI_LINK = "[Reset your password|https://evil.example/login]"
WIKI_IMAGE = "!https://evil.example/pixel.png!"
RUN_FAILED = "Run failed"  # seeded, HIGH: email and #alerts-high; its incident carries the correlation id


@pytest.fixture
def hostile_loader(new_loader, editor, approver) -> Loader:
    """An active loader whose name carries Slack and Jira markup (an Editor typed it)."""
    loader = new_loader(name=f"Sales {PING} & {SLACK_LINK} {WIKI_LINK} {WIKI_IMAGE}")
    version = loader_services.loader_version_submit(user=editor, version=loader.open_version)
    loader_services.loader_version_approve(user=approver, version=version)
    return Loader.objects.get(pk=loader.pk)


@pytest.fixture
def hostile_incident(hostile_loader: Loader, django_capture_on_commit_callbacks: Any) -> Incident:
    """The seeded HIGH rule "Run failed", its message and suggestion edited by an Admin to hold
    markup, fires on a failed run whose correlation id holds markup too; its deliveries are sent
    after commit (request ``slack`` or ``jira`` before this fixture to have them configured)."""
    DetectionRule.objects.filter(name=RUN_FAILED).update(
        message=f"{{subject}} failing {HERE} see {SLACK_LINK}\nh1. {WIKI_LINK}",
        suggestion=f"{{color:red}}Call{{color}} {PING} or open {WIKI_IMAGE} *now* & {SLACK_LINK}",
    )
    now = timezone.now()
    add_signals(hostile_loader, failed=1, ok=0, at=now)
    Signal.objects.filter(loader=hostile_loader).update(correlation_id=f"run-{HERE}-{{{{x}}}}|42]")
    with django_capture_on_commit_callbacks(execute=True):
        rule_evaluate(rule=DetectionRule.objects.get(name=RUN_FAILED), now=now)
    return Incident.objects.get(loader=hostile_loader)


def mrkdwn_texts(message: dict[str, Any]) -> list[str]:
    """Every text Slack parses in a message: the top-level text and each text object of its blocks."""
    texts = [message.get("text", "")]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                texts.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.get("blocks", []))
    return texts


# --- Slack ------------------------------------------------------------------------------------------------


def test_slack_receives_outside_text_escaped_so_nothing_pings_or_disguises_a_link(
    slack: FakeSlack, hostile_incident: Incident
):
    [post] = slack.posts("#alerts-high")

    received = json.dumps(mrkdwn_texts(post), ensure_ascii=False)
    for live in (PING, HERE, "<https://evil", "<!"):
        assert live not in received, live
    texts = "\n".join(mrkdwn_texts(post))
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example/login|Reset your password&gt;" in texts  # the loader name
    assert "failing &lt;!here&gt; see &lt;https://evil.example/login|Reset your password&gt;" in texts  # message
    assert "Call{color} &lt;!channel&gt; or open" in texts  # the suggestion
    assert "Correlation id `run-&lt;!here&gt;-{{x}}|42]`" in texts
    assert post["text"].startswith("[HIGH] SALES-DAILY failing &lt;!here&gt;")


def test_our_own_links_still_work_in_slack(slack: FakeSlack, hostile_incident: Incident):
    [post] = slack.posts("#alerts-high")

    [actions] = [block for block in post["blocks"] if block["type"] == "actions"]
    [button] = actions["elements"]
    assert button["url"] == f"http://127.0.0.1:8000/admin/incidents/incident/{hostile_incident.pk}/change/"
    assert button["text"]["text"] == "View incident"


def test_links_made_from_outside_text_are_percent_encoded(
    slack: FakeSlack, hostile_loader: Loader, django_capture_on_commit_callbacks: Any, settings
):
    settings.KIBANA_URL = "https://kibana.example.com"
    settings.GRAFANA_URL = "https://grafana.example.com"
    now = timezone.now()
    add_signals(hostile_loader, failed=1, ok=0, at=now)
    Signal.objects.filter(loader=hostile_loader).update(correlation_id="run 7|x]'y")
    with django_capture_on_commit_callbacks(execute=True):
        rule_evaluate(rule=DetectionRule.objects.get(name=RUN_FAILED), now=now)

    [post] = slack.posts("#alerts-high")
    [actions] = [block for block in post["blocks"] if block["type"] == "actions"]
    urls = {button["action_id"]: button["url"] for button in actions["elements"]}
    assert urls["open_logs"] == (
        "https://kibana.example.com/app/discover#/?_a=(query:(query_string:(query:'run%207%7Cx%5D%21%27y')))"
    )
    assert urls["open_dashboard"] == "https://grafana.example.com/?var-loader=SALES-DAILY"
    assert not any(re.search(r"[\s|<>\]]", url) for url in urls.values())


# --- Jira -------------------------------------------------------------------------------------------------


def unescaped(text: str, markup: str) -> bool:
    """Whether ``markup`` appears in ``text`` with its first character not escaped by a backslash."""
    return any(text[i - 1 : i] != "\\" for i in [m.start() for m in re.finditer(re.escape(markup), text)])


def test_jira_receives_outside_text_escaped_so_it_forms_no_link_image_or_macro(
    jira: FakeJira, hostile_incident: Incident
):
    [issue] = jira.created()
    description = issue["fields"]["description"]

    assert not unescaped(description, WIKI_LINK)
    assert not unescaped(description, WIKI_IMAGE)
    assert not unescaped(description, "{color:red}")
    assert not re.search(r"^h1\. ", description, re.MULTILINE)  # the message's second line is no heading
    links = re.findall(r"(?<!\\)\[([^\]]*?)(?<!\\)\]", description)
    assert links == [
        f"Incident in ETL Monitor|http://127.0.0.1:8000/admin/incidents/incident/{hostile_incident.pk}/change/"
    ]
    assert "\\[Reset your password\\|https://evil.example/login\\]" in description
    assert "\\!https://evil.example/pixel.png\\!" in description
    assert "\\{color:red\\}Call\\{color\\}" in description
    assert "*Correlation id:* {{run\\-<\\!here>\\-\\{\\{x\\}\\}\\|42\\]}}" in description
    assert "\n" not in issue["fields"]["summary"]
    assert issue["fields"]["summary"].startswith("[HIGH] SALES-DAILY failing <!here> see")  # plain text in Jira


def test_a_comment_written_in_etl_monitor_reaches_jira_as_text(
    jira: FakeJira, hostile_incident: Incident, operator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        incident_comment(
            user=operator,
            incident=hostile_incident,
            text=f"Fixed, details {WIKI_LINK}\n# step one\n{{noformat}} {WIKI_IMAGE} -gone- back\\slash",
        )

    body = jira.comments("OPS-1")[-1]["body"]
    assert body.startswith("[ETL Monitor] otto-operator commented: Fixed, details \\[Reset your password\\|")
    assert not unescaped(body, WIKI_LINK) and not unescaped(body, WIKI_IMAGE)
    assert "\n\\# step one\n\\{noformat\\}" in body
    assert "\\-gone\\- back&#92;slash" in body


def test_plain_text_is_left_readable_in_jira(jira: FakeJira, open_incident):
    """Hyphens inside words, dates and percentages stay as they are: only markup is escaped."""
    incident = open_incident()

    [issue] = jira.created()
    assert "*Affected service:* SALES-DAILY — SALES-DAILY loader" in issue["fields"]["description"]
    assert incident.description in issue["fields"]["description"]
