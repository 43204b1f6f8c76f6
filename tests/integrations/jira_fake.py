"""A local server speaking the part of Jira's REST API v2 that the ``jira`` library (3.10) calls, for
tests that drive the real client and for the Jira benchmark. Threaded, so a stalled answer does not
hold up the others; free of Django, so a benchmark can run it in a process of its own.

Responses follow Jira Cloud's REST v2 documentation, trimmed to the fields the library reads plus the
obvious ones: errors as ``{"errorMessages": [...], "errors": {...}}``, 401 for missing or wrong Basic
credentials on every endpoint, 429 with ``Retry-After``, and issue search on ``search/jql`` paginated
by ``nextPageToken``/``isLast``. Jira Cloud answers the legacy ``search`` endpoint with 410 Gone since
CHANGE-2046, and so does this fake unless built with ``deployment_type="Server"``, where ``search``
pages by ``startAt``/``total`` and ``issue/createmeta/{project}/issuetypes`` is what the library uses.

JQL is understood in two shapes only, ``labels = x`` and ``project = KEY AND labels = x`` (values
optionally quoted): anything else is a 400, so a query the fake cannot evaluate never passes silently.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.integrations.fakes import http_serve

Query = dict[str, list[str]]
JSON = dict[str, Any]

API_PATH = re.compile(r"/rest/api/(?:2|latest)(?P<rest>/.*)")
JQL = re.compile(
    r'\s*(?:project\s*=\s*(?P<pq>"?)(?P<project>\w+)(?P=pq)\s+AND\s+)?'
    r'labels\s*=\s*(?P<lq>"?)(?P<label>[^"\s]+)(?P=lq)\s*',
    re.IGNORECASE,
)

# statusCategory key → (id, name, colorName), as Jira defines its three categories
CATEGORIES = {
    "new": ("2", "To Do", "blue-gray"),
    "indeterminate": ("4", "In Progress", "yellow"),
    "done": ("3", "Done", "green"),
}
# A simplified workflow, keyed by the current status' category: (transition id, name, target status).
# Keying by category lets a test invent statuses with ``set_status`` and still transition them.
WORKFLOW = {
    "new": [("21", "Start", "In Progress"), ("31", "Done", "Done")],
    "indeterminate": [("31", "Done", "Done")],
    "done": [("41", "Reopen", "To Do")],
}
PRIORITIES = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}
LINK_TYPES = [  # id, name, inward, outward: Jira Cloud's defaults
    ("10000", "Blocks", "is blocked by", "blocks"),
    ("10001", "Cloners", "is cloned by", "clones"),
    ("10002", "Duplicate", "is duplicated by", "duplicates"),
    ("10003", "Relates", "relates to", "relates to"),
]
# id → (name, schema, settable when creating an issue)
SYSTEM_FIELDS: dict[str, tuple[str, JSON, bool]] = {
    "summary": ("Summary", {"type": "string", "system": "summary"}, True),
    "description": ("Description", {"type": "string", "system": "description"}, True),
    "labels": ("Labels", {"type": "array", "items": "string", "system": "labels"}, True),
    "priority": ("Priority", {"type": "priority", "system": "priority"}, True),
    "issuetype": ("Issue Type", {"type": "issuetype", "system": "issuetype"}, True),
    "project": ("Project", {"type": "project", "system": "project"}, True),
    "assignee": ("Assignee", {"type": "user", "system": "assignee"}, True),
    "reporter": ("Reporter", {"type": "user", "system": "reporter"}, True),
    "status": ("Status", {"type": "status", "system": "status"}, False),
    "resolution": ("Resolution", {"type": "resolution", "system": "resolution"}, False),
    "created": ("Created", {"type": "datetime", "system": "created"}, False),
    "updated": ("Updated", {"type": "datetime", "system": "updated"}, False),
    "comment": ("Comment", {"type": "comments-page", "system": "comment"}, False),
    "issuelinks": ("Linked Issues", {"type": "array", "items": "issuelinks", "system": "issuelinks"}, False),
}
# Someone working in Jira's UI: the author of comments and status changes made through the helpers
PERSON = {
    "accountId": "5b10a2844c20165700ede21g",
    "emailAddress": "dana.ops@example.com",
    "displayName": "Dana Ops",
    "name": "dana.ops",
}
NOT_AUTHENTICATED = "Client must be authenticated to access this resource."
NO_ISSUE = "Issue does not exist or you do not have permission to see it."
SEARCH_REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
MAX_PAGE = 100


@dataclass
class JiraRequest:
    """One request as the fake saw it; ``status`` is what it answered (0 while being answered)."""

    method: str
    path: str
    query: Query
    body: Any
    at: float
    status: int = 0
    authorization: str = ""  # the Authorization header as sent


@dataclass
class Answer:
    status: int
    body: Any = None  # None: an empty body
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # hold the answer this long, after the state has changed


@dataclass
class Fault:
    remaining: int
    status: int
    retry_after: int | None
    method: str | None
    path: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or path.startswith(self.path))


def now_jira() -> str:
    """Jira's timestamp format: 2024-05-01T12:00:00.000+0000."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def jira_error(status: int, *messages: str, **errors: str) -> Answer:
    return Answer(status, {"errorMessages": list(messages), "errors": errors})


class FakeJira:
    """State of one Jira site, its REST endpoints, and the faults a test or the benchmark scripts.

    ``fail_next`` answers the next requests (optionally only those matching a method and path prefix)
    with an error status; ``time_out_next_creates`` stores the next created issues but holds the 201
    for ``timeout_delay`` seconds, longer than the client waits, so the client gives up on an issue
    that Jira has; ``rates`` draws both faults at random for every request (serverInfo excepted).
    ``set_status``, ``add_comment`` and ``webhook_payload`` play a person working in Jira."""

    def __init__(
        self,
        *,
        username: str = "bot@example.com",
        token: str = "jira-token",
        personal_access_token: str = "",
        projects: Mapping[str, list[str]] | None = None,
        custom_fields: Mapping[str, str] | None = None,
        deployment_type: str = "Cloud",
        timeout_delay: float = 5.0,
    ) -> None:
        self.lock = threading.Lock()
        self.released = threading.Event()  # set on stop: held answers go out at once
        self.server: ThreadingHTTPServer | None = None
        self.username = username
        self.token = token
        self.personal_access_token = personal_access_token  # "" = Bearer tokens are refused (Jira Cloud)
        self.deployment_type = deployment_type
        self.timeout_delay = timeout_delay
        self.bot = {
            "accountId": "712020:etl-monitor-bot",
            "emailAddress": username,
            "displayName": "ETL Monitor Bot",
            "name": username,
        }

        project_types = dict(projects) if projects is not None else {"OPS": ["Incident", "Task"]}
        names = list(dict.fromkeys(name for types in project_types.values() for name in types))
        self.issue_type_ids = {name: str(10001 + i) for i, name in enumerate(names)}
        self.projects = {key: (str(10000 + i), types) for i, (key, types) in enumerate(project_types.items())}
        fields = dict(custom_fields) if custom_fields is not None else {"customfield_10050": "Correlation ID"}
        self.custom_fields = fields
        self.statuses = {"To Do": ("10000", "new"), "In Progress": ("3", "indeterminate"), "Done": ("10001", "done")}

        self.issues: dict[str, JSON] = {}  # key → issue, in creation order, as GET issue returns it
        self.issue_comments: dict[str, list[JSON]] = {}
        self.issue_links: list[JSON] = []
        self.requests: list[JiraRequest] = []
        self.previous_status: dict[str, str] = {}  # key → status before the latest change
        self._ids = {"issue": 10000, "comment": 10000, "link": 10000, "changelog": 10000}
        self._numbers = dict.fromkeys(self.projects, 0)
        self._faults: list[Fault] = []
        self._stalled_creates = 0
        self._p429 = 0.0
        self._p_timeout = 0.0
        self._rate_retry_after: int | None = None
        self._rng = random.Random(1)

    # --- what tests script -------------------------------------------------------------------
    def fail_next(
        self, n: int, status: int, retry_after: int | None = None, *, method: str | None = None, path: str | None = None
    ) -> None:
        """Answer the next ``n`` requests matching ``method`` and the ``path`` prefix (e.g.
        ``/rest/api/2/issue``) with ``status``; scripted faults are consumed in the order given."""
        with self.lock:
            self._faults.append(Fault(n, status, retry_after, method, path))

    def time_out_next_creates(self, n: int = 1) -> None:
        """Store the next ``n`` created issues, then hold each 201 for ``timeout_delay`` seconds."""
        with self.lock:
            self._stalled_creates += n

    def rates(
        self,
        p429: float = 0.2,
        p_timeout: float = 0.05,
        seed: int = 1,
        *,
        retry_after: int | None = 1,
        timeout_delay: float | None = None,
    ) -> None:
        """For the benchmark: each request but serverInfo is answered 429 with probability ``p429``;
        otherwise a create is, with probability ``p_timeout``, stored and answered only after
        ``timeout_delay`` seconds. ``rates(0, 0)`` turns both off."""
        with self.lock:
            self._p429, self._p_timeout = p429, p_timeout
            self._rate_retry_after = retry_after
            self._rng = random.Random(seed)
            if timeout_delay is not None:
                self.timeout_delay = timeout_delay

    def set_status(self, key: str, name: str, category: str | None = None) -> None:
        """Move an issue as a person would in Jira. A status name the fake does not know needs its
        ``category`` ("new", "indeterminate" or "done")."""
        with self.lock:
            if name not in self.statuses:
                if category not in CATEGORIES:
                    raise ValueError(f"unknown status {name!r}: give its category, one of {sorted(CATEGORIES)}")
                self.statuses[name] = (str(10100 + len(self.statuses)), category)
            self._change_status(self._issue(key), name)

    def add_comment(self, key: str, body: str, author: Mapping[str, str] | None = None) -> JSON:
        """A comment written in Jira by ``author`` (a person by default), not through the API."""
        with self.lock:
            return copy.deepcopy(self._comment_add(self._issue(key), body, author or PERSON))

    def webhook_payload(
        self,
        kind: str,
        key: str,
        *,
        from_status: str | None = None,
        user: Mapping[str, str] | None = None,
        comment_id: str | None = None,
    ) -> JSON:
        """The JSON Jira Cloud POSTs to a webhook for ``jira:issue_updated`` (a status change, from
        ``from_status`` — by default the status before the latest change — to the current one) or
        ``comment_created`` (``comment_id``, by default the issue's latest comment)."""
        with self.lock:
            issue = self._issue(key)
            timestamp = int(time.time() * 1000)
            if kind == "jira:issue_updated":
                old = from_status or self.previous_status.get(issue["key"])
                if old is None:
                    raise ValueError(f"{key} never changed status: pass from_status")
                new = issue["fields"]["status"]["name"]
                self._ids["changelog"] += 1
                item = {
                    "field": "status",
                    "fieldtype": "jira",
                    "fieldId": "status",
                    "from": self.statuses[old][0],
                    "fromString": old,
                    "to": self.statuses[new][0],
                    "toString": new,
                }
                return {
                    "timestamp": timestamp,
                    "webhookEvent": "jira:issue_updated",
                    "issue_event_type_name": "issue_generic",
                    "user": self._user_json(user or PERSON),
                    "issue": self._issue_json(issue, None),
                    "changelog": {"id": str(self._ids["changelog"]), "items": [item]},
                }
            if kind == "comment_created":
                comments = self.issue_comments[issue["key"]]
                found = [c for c in comments if comment_id is None or c["id"] == comment_id]
                if not found:
                    raise ValueError(f"{key} has no comment {comment_id or ''}".strip())
                comment = found[-1]
                brief = ("summary", "issuetype", "project", "assignee", "priority", "status")
                return {
                    "timestamp": timestamp,
                    "webhookEvent": "comment_created",
                    "issue_event_type_name": "issue_commented",
                    "user": copy.deepcopy(comment["author"]),
                    "comment": copy.deepcopy(comment),
                    "issue": self._issue_json(issue, list(brief)),
                }
        raise ValueError(f"unknown webhook kind {kind!r}: jira:issue_updated or comment_created")

    # --- what tests read -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The base URL to give to ``JIRA(server=...)``."""
        assert self.server is not None, "start the fake with serve(fake) first"
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def created(self) -> list[JSON]:
        """Every issue created, oldest first."""
        with self.lock:
            return [self._issue_json(issue, None) for issue in self.issues.values()]

    def issue(self, key: str) -> JSON:
        with self.lock:
            return self._issue_json(self._issue(key), None)

    def issues_with_label(self, label: str) -> list[JSON]:
        """Issues carrying ``label``: more than one means the client created a duplicate."""
        with self.lock:
            found = [i for i in self.issues.values() if label in i["fields"]["labels"]]
            return [self._issue_json(issue, None) for issue in found]

    def label_counts(self, prefix: str = "") -> dict[str, int]:
        """How many issues carry each label starting with ``prefix`` (duplicates count above 1)."""
        counts: dict[str, int] = {}
        with self.lock:
            for issue in self.issues.values():
                for label in issue["fields"]["labels"]:
                    if label.startswith(prefix):
                        counts[label] = counts.get(label, 0) + 1
        return counts

    def comments(self, key: str) -> list[JSON]:
        with self.lock:
            return copy.deepcopy(self.issue_comments[self._issue(key)["key"]])

    def links(self) -> list[JSON]:
        with self.lock:
            return copy.deepcopy(self.issue_links)

    def calls(self, method: str | None = None, path: str | None = None) -> list[JiraRequest]:
        """Requests received, optionally only one method and a path prefix (``/rest/api/2/issue``)."""
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path.startswith(path))
            ]

    # --- protocol ------------------------------------------------------------------------------
    def handle(self, method: str, target: str, raw_body: bytes, headers: Mapping[str, str]) -> Answer:
        """Answer one HTTP request; ``headers`` has lower-case names."""
        parsed = urlparse(target)
        query = parse_qs(parsed.query, keep_blank_values=True)
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = raw_body.decode(errors="replace")
        entry = JiraRequest(
            method, parsed.path, query, body, time.time(), authorization=headers.get("authorization", "")
        )
        with self.lock:
            self.requests.append(entry)
            answer = self._injected_fault(method, parsed.path)
            if answer is None:
                answer = self._answer(method, parsed.path, query, body, raw_body, headers)
                if answer.status == HTTPStatus.CREATED and self._should_stall(method, parsed.path):
                    answer.delay = self.timeout_delay
            entry.status = int(answer.status)
        return answer

    def _injected_fault(self, method: str, path: str) -> Answer | None:
        for fault in self._faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return self._fault_answer(fault.status, fault.retry_after)
        if self._p429 and not path.endswith("/serverInfo") and self._rng.random() < self._p429:
            return self._fault_answer(HTTPStatus.TOO_MANY_REQUESTS, self._rate_retry_after)
        return None

    @staticmethod
    def _fault_answer(status: int, retry_after: int | None) -> Answer:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            return Answer(status, {"errorMessages": ["Rate limit exceeded"]}, headers)
        answer = jira_error(status, HTTPStatus(status).phrase)
        answer.headers.update(headers)
        return answer

    def _should_stall(self, method: str, path: str) -> bool:
        """Whether to hold the answer to an issue just created (not a comment, also a 201)."""
        if method != "POST" or not re.fullmatch(r"/rest/api/(?:2|latest)/issue", path):
            return False
        if self._stalled_creates:
            self._stalled_creates -= 1
            return True
        return bool(self._p_timeout) and self._rng.random() < self._p_timeout

    def _authenticated(self, headers: Mapping[str, str]) -> bool:
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":  # Jira Data Center's personal access tokens
            return bool(self.personal_access_token) and encoded == self.personal_access_token
        if scheme.lower() != "basic":
            return False
        try:
            user, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self.username and secret == self.token

    def _answer(
        self, method: str, path: str, query: Query, body: Any, raw_body: bytes, headers: Mapping[str, str]
    ) -> Answer:
        if not self._authenticated(headers):
            answer = jira_error(HTTPStatus.UNAUTHORIZED, NOT_AUTHENTICATED)
            answer.headers["X-Seraph-LoginReason"] = "AUTHENTICATED_FAILED"
            return answer
        api = API_PATH.fullmatch(path)
        if api is None:
            return jira_error(HTTPStatus.NOT_FOUND, f"null for uri: {path}")
        if raw_body and method in ("POST", "PUT"):
            if not headers.get("content-type", "").startswith("application/json"):
                return jira_error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type")
            if not isinstance(body, dict):
                return jira_error(
                    HTTPStatus.BAD_REQUEST, "Unexpected character in the request body: not a JSON object."
                )
        for route_method, pattern, endpoint in ROUTES:
            matched = pattern.fullmatch(api["rest"])
            if matched and route_method == method:
                return endpoint(self, query, body if isinstance(body, dict) else {}, **matched.groupdict())
        return jira_error(HTTPStatus.NOT_FOUND, f"null for uri: {path}")

    # --- endpoints (see ROUTES) ----------------------------------------------------------------
    def _server_info(self, query: Query, body: JSON) -> Answer:
        cloud = self.deployment_type == "Cloud"
        numbers = [1001, 0, 0] if cloud else [9, 12, 2]
        return Answer(
            HTTPStatus.OK,
            {
                "baseUrl": self.url,
                "version": "1001.0.0-SNAPSHOT" if cloud else "9.12.2",
                "versionNumbers": numbers,
                "deploymentType": self.deployment_type,
                "buildNumber": 100287 if cloud else 9120002,
                "buildDate": "2025-06-02T00:00:00.000+0000",
                "serverTime": now_jira(),
                "scmInfo": "0" * 40,
                "serverTitle": "Fake Jira",
            },
        )

    def _myself(self, query: Query, body: JSON) -> Answer:
        user = self._user_json(self.bot)
        user.update(locale="en_US", groups={"size": 1, "items": []})
        return Answer(HTTPStatus.OK, user)

    def _project_list(self, query: Query, body: JSON) -> Answer:
        return Answer(HTTPStatus.OK, [self._project_json(key) for key in self.projects])

    def _project_get(self, query: Query, body: JSON, key: str) -> Answer:
        found = self._project(key)
        if found is None:
            kind = "id" if key.isdigit() else "key"
            return jira_error(HTTPStatus.NOT_FOUND, f"No project could be found with {kind} '{key}'.")
        return Answer(HTTPStatus.OK, self._project_json(found))

    def _field_list(self, query: Query, body: JSON) -> Answer:
        fields = [
            {
                "id": field_id,
                "key": field_id,
                "name": name,
                "custom": False,
                "orderable": settable,
                "navigable": True,
                "searchable": True,
                "clauseNames": [field_id],
                "schema": schema,
            }
            for field_id, (name, schema, settable) in SYSTEM_FIELDS.items()
        ]
        for field_id, name in self.custom_fields.items():
            number = field_id.removeprefix("customfield_")
            fields.append(
                {
                    "id": field_id,
                    "key": field_id,
                    "name": name,
                    "untranslatedName": name,
                    "custom": True,
                    "orderable": True,
                    "navigable": True,
                    "searchable": True,
                    "clauseNames": [f"cf[{number}]", name],
                    "schema": {
                        "type": "string",
                        "custom": "com.atlassian.jira.plugin.system.customfieldtypes:textfield",
                        "customId": int(number) if number.isdigit() else 0,
                    },
                }
            )
        return Answer(HTTPStatus.OK, fields)

    def _issue_type_list(self, query: Query, body: JSON) -> Answer:
        return Answer(HTTPStatus.OK, [self._issue_type_json(name) for name in self.issue_type_ids])

    def _link_type_list(self, query: Query, body: JSON) -> Answer:
        return Answer(HTTPStatus.OK, {"issueLinkTypes": [self._link_type_json(t) for t in LINK_TYPES]})

    def _createmeta(self, query: Query, body: JSON) -> Answer:
        """The pre-8.4 ``issue/createmeta``, which the library uses on Cloud."""
        keys = set(_listed(query, "projectKeys")) | set(_listed(query, "projectIds"))
        type_names = set(_listed(query, "issuetypeNames"))
        type_ids = set(_listed(query, "issuetypeIds"))
        with_fields = "projects.issuetypes.fields" in ",".join(query.get("expand", []))
        projects = []
        for key, (project_id, types) in self.projects.items():
            if keys and key not in keys and project_id not in keys:
                continue
            issue_types = []
            for name in types:
                if (type_names or type_ids) and name not in type_names and self.issue_type_ids[name] not in type_ids:
                    continue
                issue_type = self._issue_type_json(name)
                if with_fields:
                    issue_type["fields"] = {f["fieldId"]: f for f in self._create_fields()}
                issue_types.append(issue_type)
            project = {k: v for k, v in self._project_json(key).items() if k != "issueTypes"}
            projects.append({**project, "issuetypes": issue_types})
        return Answer(HTTPStatus.OK, {"expand": "projects", "projects": projects})

    def _createmeta_issue_types(self, query: Query, body: JSON, project: str) -> Answer:
        """``issue/createmeta/{project}/issuetypes``: the library reads Server's ``values``; Cloud
        names the list ``issueTypes`` (the library refuses to call this on Cloud)."""
        key = self._project(project)
        if key is None:
            return jira_error(HTTPStatus.NOT_FOUND, f"No project could be found with key '{project}'.")
        items = [self._issue_type_json(name) for name in self.projects[key][1]]
        return self._page(query, items, "issueTypes" if self.deployment_type == "Cloud" else "values")

    def _createmeta_fields(self, query: Query, body: JSON, project: str, type_id: str) -> Answer:
        key = self._project(project)
        if key is None or type_id not in {self.issue_type_ids[n] for n in self.projects[key][1]}:
            return jira_error(HTTPStatus.NOT_FOUND, "Issue type with given ID does not exist or is not in the project.")
        items = self._create_fields()
        return self._page(query, items, "fields" if self.deployment_type == "Cloud" else "values")

    def _issue_create(self, query: Query, body: JSON) -> Answer:
        fields = body.get("fields")
        if not isinstance(fields, dict):
            return jira_error(HTTPStatus.BAD_REQUEST, "Can not instantiate an issue without 'fields'.")
        errors, project, issue_type, priority = self._create_errors(fields)
        if errors or project is None or issue_type is None:
            return Answer(HTTPStatus.BAD_REQUEST, {"errorMessages": [], "errors": errors})
        summary, description, labels = fields["summary"], fields.get("description"), fields.get("labels") or []

        self._ids["issue"] += 1
        self._numbers[project] += 1
        issue_id, key, created = str(self._ids["issue"]), f"{project}-{self._numbers[project]}", now_jira()
        stored: JSON = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": issue_id,
            "self": f"{self.url}/rest/api/2/issue/{issue_id}",
            "key": key,
            "fields": {
                "summary": summary,
                "description": description,
                "labels": list(labels),
                "priority": self._priority_json(priority),
                "issuetype": self._issue_type_json(issue_type),
                "project": {k: v for k, v in self._project_json(project).items() if k != "issueTypes"},
                "status": self._status_json("To Do"),
                "resolution": None,
                "assignee": fields.get("assignee"),
                "reporter": self._user_json(self.bot),
                "creator": self._user_json(self.bot),
                "created": created,
                "updated": created,
                "statuscategorychangedate": created,
                **{name: fields[name] for name in self.custom_fields if name in fields},
            },
        }
        self.issues[key] = stored
        self.issue_comments[key] = []
        return Answer(HTTPStatus.CREATED, {"id": issue_id, "key": key, "self": stored["self"]})

    def _create_errors(self, fields: JSON) -> tuple[dict[str, str], str | None, str | None, str]:
        """Jira's field errors for a create, and the project key, issue type and priority it names."""
        errors: dict[str, str] = {}
        project = self._project(_ref(fields.get("project"), "key"))
        issue_type = None
        if project is None:
            errors["project"] = "Specify a valid project ID or key"
        else:
            wanted = fields.get("issuetype")
            if isinstance(wanted, dict):
                wanted_id = str(wanted.get("id"))
                types = self.projects[project][1]
                named = [n for n in types if n == wanted.get("name") or self.issue_type_ids[n] == wanted_id]
                issue_type = next(iter(named), None)
            if issue_type is None:
                errors["issuetype"] = "Specify a valid issue type"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        description = fields.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 32767):
            errors["description"] = "The entered text is too long. It exceeds the allowed limit of 32,767 characters."
        labels = fields.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            errors["labels"] = "Labels must be a list of strings."
        else:
            for label in labels:
                if not label or re.search(r"\s", label):
                    errors["labels"] = f"The label '{label}' contains spaces which is invalid."
        priority = "Medium"
        wanted_priority = fields.get("priority")
        if wanted_priority is not None:
            by_id = {priority_id: name for name, priority_id in PRIORITIES.items()}
            if isinstance(wanted_priority, dict):
                priority = wanted_priority.get("name") or by_id.get(str(wanted_priority.get("id")), "")
            else:
                priority = str(wanted_priority)
            if priority not in PRIORITIES:
                errors["priority"] = f"Priority name '{priority}' is not valid"
        settable = {name for name, (_, _, can_set) in SYSTEM_FIELDS.items() if can_set} | set(self.custom_fields)
        for name in fields:
            if name not in settable:
                errors[name] = f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
        return errors, project, issue_type, priority

    def _issue_get(self, query: Query, body: JSON, key: str) -> Answer:
        issue = self._find(key)
        if issue is None:
            return jira_error(HTTPStatus.NOT_FOUND, NO_ISSUE)
        wanted = _listed(query, "fields")
        return Answer(HTTPStatus.OK, self._issue_json(issue, wanted or None))

    def _search_jql(self, query: Query, body: JSON) -> Answer:
        """Cloud's enhanced search: ``fields`` absent means ids only; pages chain by ``nextPageToken``."""
        params = _search_params(query, body)
        if isinstance(params, Answer):
            return params
        matches = self._jql_matches(params["jql"])
        if isinstance(matches, Answer):
            return matches
        token = params.get("nextPageToken") or "0"
        if not str(token).isdigit():
            return jira_error(HTTPStatus.BAD_REQUEST, "The provided next page token is invalid or expired.")
        start, size = int(token), min(params["maxResults"], MAX_PAGE)
        page = matches[start : start + size]
        result: JSON = {"issues": [self._issue_json(issue, params["fields"] or ["id"]) for issue in page]}
        if start + size < len(matches):
            result["nextPageToken"] = str(start + size)
        result["isLast"] = start + size >= len(matches)
        return Answer(HTTPStatus.OK, result)

    def _search_legacy(self, query: Query, body: JSON) -> Answer:
        if self.deployment_type == "Cloud":
            return jira_error(HTTPStatus.GONE, SEARCH_REMOVED)
        params = _search_params(query, body)
        if isinstance(params, Answer):
            return params
        matches = self._jql_matches(params["jql"])
        if isinstance(matches, Answer):
            return matches
        start, size = params["startAt"], min(params["maxResults"], MAX_PAGE)
        return Answer(
            HTTPStatus.OK,
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": size,
                "total": len(matches),
                "issues": [self._issue_json(issue, params["fields"]) for issue in matches[start : start + size]],
            },
        )

    def _comment_list(self, query: Query, body: JSON, key: str) -> Answer:
        issue = self._find(key)
        if issue is None:
            return jira_error(HTTPStatus.NOT_FOUND, NO_ISSUE)
        comments = self.issue_comments[issue["key"]]
        return self._page(query, copy.deepcopy(comments), "comments")

    def _comment_create(self, query: Query, body: JSON, key: str) -> Answer:
        issue = self._find(key)
        if issue is None:
            return jira_error(HTTPStatus.NOT_FOUND, NO_ISSUE)
        text = body.get("body")
        if not isinstance(text, str) or not text.strip():
            return Answer(
                HTTPStatus.BAD_REQUEST, {"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}}
            )
        return Answer(HTTPStatus.CREATED, copy.deepcopy(self._comment_add(issue, text, self.bot)))

    def _transition_list(self, query: Query, body: JSON, key: str) -> Answer:
        issue = self._find(key)
        if issue is None:
            return jira_error(HTTPStatus.NOT_FOUND, NO_ISSUE)
        only = _listed(query, "transitionId")
        transitions = [
            {
                "id": transition_id,
                "name": name,
                "to": self._status_json(target),
                "hasScreen": False,
                "isGlobal": False,
                "isInitial": False,
                "isAvailable": True,
                "isConditional": False,
                "isLooped": False,
            }
            for transition_id, name, target in self._transitions(issue)
            if not only or transition_id in only
        ]
        return Answer(HTTPStatus.OK, {"expand": "transitions", "transitions": transitions})

    def _transition_do(self, query: Query, body: JSON, key: str) -> Answer:
        issue = self._find(key)
        if issue is None:
            return jira_error(HTTPStatus.NOT_FOUND, NO_ISSUE)
        wanted = body.get("transition")
        if not isinstance(wanted, dict) or wanted.get("id") is None:
            return jira_error(HTTPStatus.BAD_REQUEST, "Missing 'transition' identifier")
        transition_id = str(wanted["id"])  # the library sends it as a number
        target = next((t for i, _, t in self._transitions(issue) if i == transition_id), None)
        if target is None:
            return jira_error(HTTPStatus.BAD_REQUEST, f"Transition id '{transition_id}' is not valid for this issue.")
        self._change_status(issue, target)
        for change in (body.get("update") or {}).get("comment") or []:
            if isinstance(change, dict) and isinstance(change.get("add"), dict):
                self._comment_add(issue, str(change["add"].get("body", "")), self.bot)
        return Answer(HTTPStatus.NO_CONTENT)

    def _link_create(self, query: Query, body: JSON) -> Answer:
        """``issueLink``: answered 201 with no body, as Jira does; a link ``comment`` is ignored."""
        wanted = body.get("type") or {}
        link_type = next((t for t in LINK_TYPES if wanted.get("name") == t[1] or wanted.get("id") == t[0]), None)
        if link_type is None:
            return jira_error(HTTPStatus.NOT_FOUND, f"No issue link type with name '{wanted.get('name')}' found.")
        inward = self._find(_ref(body.get("inwardIssue"), "key") or "")
        outward = self._find(_ref(body.get("outwardIssue"), "key") or "")
        if inward is None or outward is None:
            return jira_error(HTTPStatus.NOT_FOUND, NO_ISSUE)
        self._ids["link"] += 1
        link = {"id": str(self._ids["link"]), "type": self._link_type_json(link_type)}
        self.issue_links.append({**link, "inwardIssue": inward["key"], "outwardIssue": outward["key"]})
        return Answer(HTTPStatus.CREATED)

    # --- state and representations (called with the lock held) ------------------------------
    def _issue(self, key: str) -> JSON:
        issue = self._find(key)
        if issue is None:
            raise KeyError(f"no issue {key}")
        return issue

    def _find(self, key_or_id: str) -> JSON | None:
        issue = self.issues.get(key_or_id.upper())
        return issue or next((i for i in self.issues.values() if i["id"] == key_or_id), None)

    def _project(self, key_or_id: str | None) -> str | None:
        if key_or_id is None:
            return None
        for key, (project_id, _) in self.projects.items():
            if key_or_id.upper() == key or key_or_id == project_id:
                return key
        return None

    def _transitions(self, issue: JSON) -> list[tuple[str, str, str]]:
        return WORKFLOW[issue["fields"]["status"]["statusCategory"]["key"]]

    def _change_status(self, issue: JSON, name: str) -> None:
        fields = issue["fields"]
        self.previous_status[issue["key"]] = fields["status"]["name"]
        changed = now_jira()
        if fields["status"]["statusCategory"]["key"] != self.statuses[name][1]:
            fields["statuscategorychangedate"] = changed
        fields["status"] = self._status_json(name)
        done = self.statuses[name][1] == "done"
        fields["resolution"] = (
            {"self": f"{self.url}/rest/api/2/resolution/10000", "id": "10000", "name": "Done"} if done else None
        )
        fields["updated"] = changed

    def _comment_add(self, issue: JSON, body: str, author: Mapping[str, str]) -> JSON:
        self._ids["comment"] += 1
        comment_id, created = str(self._ids["comment"]), now_jira()
        comment = {
            "self": f"{self.url}/rest/api/2/issue/{issue['id']}/comment/{comment_id}",
            "id": comment_id,
            "author": self._user_json(author),
            "body": body,
            "updateAuthor": self._user_json(author),
            "created": created,
            "updated": created,
            "jsdPublic": True,
        }
        self.issue_comments[issue["key"]].append(comment)
        issue["fields"]["updated"] = created
        return comment

    def _jql_matches(self, jql: str) -> list[JSON] | Answer:
        parsed = JQL.fullmatch(jql or "")
        if parsed is None:
            return jira_error(
                HTTPStatus.BAD_REQUEST,
                "Error in the JQL Query: the fake understands only `labels = x` and "
                f"`project = KEY AND labels = x`, not {jql!r}.",
            )
        project = parsed["project"]
        if project is not None and self._project(project) is None:
            return jira_error(HTTPStatus.BAD_REQUEST, f"The value '{project}' does not exist for the field 'project'.")
        return [
            issue
            for issue in self.issues.values()
            if parsed["label"] in issue["fields"]["labels"]
            and (project is None or issue["fields"]["project"]["key"] == self._project(project))
        ]

    def _issue_json(self, issue: JSON, fields: list[str] | None) -> JSON:
        """An issue as GET issue answers it: ``fields`` None or ``*all``/``*navigable`` for every field."""
        out = copy.deepcopy(issue)
        comments = copy.deepcopy(self.issue_comments[issue["key"]])
        out["fields"]["comment"] = {
            "comments": comments,
            "maxResults": len(comments),
            "total": len(comments),
            "startAt": 0,
        }
        out["fields"]["issuelinks"] = [
            self._link_json(link, issue["key"])
            for link in self.issue_links
            if issue["key"] in (link["inwardIssue"], link["outwardIssue"])
        ]
        if fields is not None and not {"*all", "*navigable"} & set(fields):
            if fields == ["id"]:
                return {"id": out["id"]}
            out["fields"] = {name: value for name, value in out["fields"].items() if name in fields}
        return out

    def _link_json(self, link: JSON, seen_from: str) -> JSON:
        outward = link["inwardIssue"] == seen_from  # seen from the inward issue, the other end is outward
        other = self.issues[link["outwardIssue"] if outward else link["inwardIssue"]]
        brief = {name: copy.deepcopy(other["fields"][name]) for name in ("summary", "status", "priority", "issuetype")}
        other_json = {"id": other["id"], "key": other["key"], "self": other["self"], "fields": brief}
        return {
            "id": link["id"],
            "self": f"{self.url}/rest/api/2/issueLink/{link['id']}",
            "type": copy.deepcopy(link["type"]),
            "outwardIssue" if outward else "inwardIssue": other_json,
        }

    def _page(self, query: Query, items: list[Any], items_key: str) -> Answer:
        try:
            start = int(_first(query, "startAt") or 0)
            size = int(_first(query, "maxResults") or 50)
        except ValueError:
            return jira_error(HTTPStatus.BAD_REQUEST, "startAt and maxResults must be numbers.")
        page = items[start : start + size]
        total = len(items)
        result = {
            "startAt": start,
            "maxResults": size,
            "total": total,
            "isLast": start + size >= total,
            items_key: page,
        }
        return Answer(HTTPStatus.OK, result)

    def _create_fields(self) -> list[JSON]:
        required = {"summary", "issuetype", "project"}
        out = []
        for field_id, (name, schema, settable) in SYSTEM_FIELDS.items():
            if settable:
                item = {"fieldId": field_id, "key": field_id, "name": name, "required": field_id in required}
                item.update(schema=schema, hasDefaultValue=field_id == "priority", operations=["set"])
                if field_id == "priority":
                    item["allowedValues"] = [self._priority_json(p) for p in PRIORITIES]
                out.append(item)
        for field_id, name in self.custom_fields.items():
            schema = {"type": "string", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:textfield"}
            item = {"fieldId": field_id, "key": field_id, "name": name, "required": False, "schema": schema}
            out.append({**item, "hasDefaultValue": False, "operations": ["set"]})
        return out

    def _user_json(self, user: Mapping[str, str]) -> JSON:
        return {
            "self": f"{self.url}/rest/api/2/user?accountId={user['accountId']}",
            **user,
            "active": True,
            "timeZone": "Etc/UTC",
            "accountType": "atlassian",
        }

    def _project_json(self, key: str) -> JSON:
        project_id, types = self.projects[key]
        return {
            "self": f"{self.url}/rest/api/2/project/{project_id}",
            "id": project_id,
            "key": key,
            "name": f"{key} project",
            "projectTypeKey": "software",
            "simplified": False,
            "style": "classic",
            "issueTypes": [self._issue_type_json(name) for name in types],
        }

    def _issue_type_json(self, name: str) -> JSON:
        type_id = self.issue_type_ids[name]
        return {
            "self": f"{self.url}/rest/api/2/issuetype/{type_id}",
            "id": type_id,
            "name": name,
            "description": "",
            "subtask": False,
            "hierarchyLevel": 0,
        }

    def _status_json(self, name: str) -> JSON:
        status_id, category = self.statuses[name]
        category_id, category_name, colour = CATEGORIES[category]
        return {
            "self": f"{self.url}/rest/api/2/status/{status_id}",
            "description": "",
            "name": name,
            "id": status_id,
            "statusCategory": {
                "self": f"{self.url}/rest/api/2/statuscategory/{category_id}",
                "id": int(category_id),
                "key": category,
                "colorName": colour,
                "name": category_name,
            },
        }

    def _priority_json(self, name: str) -> JSON:
        return {"self": f"{self.url}/rest/api/2/priority/{PRIORITIES[name]}", "id": PRIORITIES[name], "name": name}

    def _link_type_json(self, link_type: tuple[str, str, str, str]) -> JSON:
        type_id, name, inward, outward = link_type
        return {
            "id": type_id,
            "name": name,
            "inward": inward,
            "outward": outward,
            "self": f"{self.url}/rest/api/2/issueLinkType/{type_id}",
        }


def _first(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _listed(query: Query, name: str) -> list[str]:
    """A list parameter, given repeated (``fields=a&fields=b``) or comma-separated (``fields=a,b``)."""
    return [item.strip() for value in query.get(name, []) for item in value.split(",") if item.strip()]


def _ref(value: Any, name: str) -> str | None:
    """The key (or id) of a ``{"key": ...}`` / ``{"id": ...}`` reference."""
    if not isinstance(value, dict):
        return None
    found = value.get(name, value.get("id"))
    return None if found is None else str(found)


def _search_params(query: Query, body: JSON) -> JSON | Answer:
    """jql, fields (None when not asked for), maxResults, startAt, nextPageToken from a GET's query
    string or a POST's JSON body."""
    if body:
        fields = body.get("fields")
        raw = {k: body.get(k) for k in ("jql", "maxResults", "startAt", "nextPageToken")}
        fields = fields.split(",") if isinstance(fields, str) else fields
    else:
        fields = _listed(query, "fields") or None
        raw = {k: _first(query, k) for k in ("jql", "maxResults", "startAt", "nextPageToken")}
    try:
        max_results = int(raw["maxResults"]) if raw["maxResults"] is not None else 50
        start_at = int(raw["startAt"]) if raw["startAt"] is not None else 0
    except (TypeError, ValueError):
        return jira_error(HTTPStatus.BAD_REQUEST, "maxResults and startAt must be numbers.")
    return {
        "jql": raw["jql"] or "",
        "fields": fields,
        "maxResults": max_results,
        "startAt": start_at,
        "nextPageToken": raw["nextPageToken"],
    }


Endpoint = Callable[..., Answer]
ROUTES: list[tuple[str, re.Pattern[str], Endpoint]] = [
    (method, re.compile(pattern), endpoint)
    for method, pattern, endpoint in [
        ("GET", r"/serverInfo", FakeJira._server_info),
        ("GET", r"/myself", FakeJira._myself),
        ("GET", r"/project", FakeJira._project_list),
        ("GET", r"/project/(?P<key>[^/]+)", FakeJira._project_get),
        ("GET", r"/field", FakeJira._field_list),
        ("GET", r"/issuetype", FakeJira._issue_type_list),
        ("GET", r"/issueLinkType", FakeJira._link_type_list),
        ("GET", r"/issue/createmeta", FakeJira._createmeta),
        ("GET", r"/issue/createmeta/(?P<project>[^/]+)/issuetypes", FakeJira._createmeta_issue_types),
        ("GET", r"/issue/createmeta/(?P<project>[^/]+)/issuetypes/(?P<type_id>[^/]+)", FakeJira._createmeta_fields),
        ("POST", r"/issue", FakeJira._issue_create),
        ("GET", r"/issue/(?P<key>[^/]+)", FakeJira._issue_get),
        ("GET", r"/search/jql", FakeJira._search_jql),
        ("POST", r"/search/jql", FakeJira._search_jql),
        ("GET", r"/search", FakeJira._search_legacy),
        ("POST", r"/search", FakeJira._search_legacy),
        ("GET", r"/issue/(?P<key>[^/]+)/comment", FakeJira._comment_list),
        ("POST", r"/issue/(?P<key>[^/]+)/comment", FakeJira._comment_create),
        ("GET", r"/issue/(?P<key>[^/]+)/transitions", FakeJira._transition_list),
        ("POST", r"/issue/(?P<key>[^/]+)/transitions", FakeJira._transition_do),
        ("POST", r"/issueLink", FakeJira._link_create),
    ]
]


def serve(fake: FakeJira) -> Callable[[], None]:
    """Start the fake on a free loopback port (``fake.url``); return the function that stops it."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            answer = fake.handle(self.command, self.path, raw, headers)
            if answer.delay:
                fake.released.wait(answer.delay)  # the client has likely given up by now
            data = b"" if answer.body is None else json.dumps(answer.body).encode()
            try:
                self.send_response(answer.status)
                if data:
                    self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client is gone (it timed out, or was killed)

        do_POST = do_PUT = do_DELETE = do_GET  # noqa: N815

    fake.server, stop_server = http_serve(Handler)

    def stop() -> None:
        fake.released.set()  # answers held back go out (to clients that have given up)
        stop_server()

    return stop


def jira_process(pipe: Any, p429: float, p_timeout: float, timeout_delay: float, retry_after: int) -> None:
    """Run a FakeJira in its own process (as a remote Jira is) for the benchmark: send its URL,
    serve until told to stop, then send the label counts and the request tally."""
    fake = FakeJira(timeout_delay=timeout_delay)
    fake.rates(p429=p429, p_timeout=p_timeout, seed=7, retry_after=retry_after)
    stop = serve(fake)
    pipe.send(fake.url)
    pipe.recv()
    stop()
    statuses: dict[int, int] = {}
    for request in fake.requests:
        statuses[request.status] = statuses.get(request.status, 0) + 1
    creates = sum(1 for r in fake.requests if r.method == "POST" and r.path == "/rest/api/2/issue")
    pipe.send({"labels": fake.label_counts("etlm-incident-"), "statuses": statuses, "creates": creates})
