"""docs/slack.md gives a Slack app manifest with "exactly the scopes ETL Monitor uses": every Slack
Web API method the code calls must be in the page's scope table, and the manifest must ask for
the table's scopes, no more and no fewer. A new Slack call fails here until its scope is documented."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "slack.md"
# slack-sdk's WebClient methods are the Web API method names with the dot as an underscore.
CALL = re.compile(r"\bclient\.((?:chat|conversations|users|reactions|files|views|auth)_[A-Za-z]+)\(")


def _methods_called() -> set[str]:
    found = set()
    for path in (ROOT / "integrations").rglob("*.py"):
        found |= {name.replace("_", ".", 1) for name in CALL.findall(path.read_text())}
    return found


def _scope_table() -> dict[str, set[str]]:
    """Scope → the methods its row names, from the table under the manifest."""
    rows = re.findall(r"^\| `([a-z:.]+)` \| ([^|]+) \|", PAGE.read_text(), flags=re.M)
    return {scope: set(re.findall(r"`([a-z]+\.[A-Za-z]+)`", methods)) for scope, methods in rows}


def _manifest_scopes() -> set[str]:
    [manifest] = re.findall(r"^```yaml\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)
    return set(yaml.safe_load(manifest)["oauth_config"]["scopes"]["bot"])


def test_it_documents_every_slack_method_the_code_calls():
    called = _methods_called()
    assert {"chat.postMessage", "chat.update", "conversations.history"} <= called  # the scan still works
    documented = set().union(*_scope_table().values())
    assert called <= documented, f"add the scope of {sorted(called - documented)} to docs/slack.md"


def test_the_manifest_asks_for_exactly_the_documented_scopes():
    assert _manifest_scopes() == set(_scope_table())
