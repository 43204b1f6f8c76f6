"""Every code sample in the docs and the README is one a reader can run: one case per page, each
failure naming the page, the line and the offending text.

- ```json blocks parse (``json.loads``).
- ```sh, ```bash, ```shell blocks pass ``bash -n``; ```console blocks too, once the ``$ `` prompts
  are taken off and the output lines left out.
- Every ``curl`` to ETL Monitor calls a real endpoint: an ``/api/v1/`` path of the OpenAPI schema
  (docs/api/openapi.yaml, itself kept equal to the code by test_api_schema.py) with a method it
  has, or a path the URLconf resolves (pings, health, metrics, webhooks, the admin). Path
  templates such as ``/api/v1/runs/{run_id}/`` match a concrete value or a placeholder
  (``$RUN_ID``, ``{run_id}``, ``<run_id>``, ``…``). Shell variables defined on the page (``API=…``
  in a block or in a code span) are expanded first. A curl to another service (Grafana, Jira,
  Prometheus…) is not ours to check; ETL Monitor's are the ones to ``etl.example.com``, a host
  with "etl" in its name, port 8000 (``make run``'s), a bare ``localhost``/``127.0.0.1``, or a
  variable the page leaves undefined whose name is not another service's (``$ETL_MONITOR_URL``,
  ``$BASE_URL``: the site's address; any other, like an undefined ``$API``, is a mistake).
- ```cron lines are checked the same way (the command after the schedule).
- Every ``manage.py <command>`` (in any code block, or a code span) names a real management
  command.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.core.management import get_commands
from django.urls import Resolver404, resolve

from tests.docs.pages import OPENAPI_FILE, CodeBlock, code_blocks, doc_pages, inline_items, page_name

SHELL_LANGUAGES = {"sh", "bash", "shell", "zsh"}
CONSOLE_LANGUAGES = {"console", "shell-session"}
# Blocks whose commands may call curl: shell, transcripts, plain blocks (which often hold a
# transcript with `$ ` prompts) and crontabs.
COMMAND_LANGUAGES = SHELL_LANGUAGES | CONSOLE_LANGUAGES | {"", "text", "cron"}
CRON_SCHEDULE = re.compile(r"^\s*(@\w+|(\S+\s+){5})(?=\S)")

# A URL that starts with a variable the page does not define is ETL Monitor's unless the variable
# names another service.
OTHER_SERVICES = re.compile(r"JIRA|GRAFANA|PROMETHEUS|ALERTMANAGER|ELASTIC|KIBANA|SLACK|TWILIO|SMTP|S3")
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
POSITIONAL = re.compile(r"\$\{?[0-9@*]")
PLACEHOLDER = re.compile(r"[$<>{}…]|\.\.\.")
MANAGE_PY = re.compile(r"manage\.py[\"',\s]+([a-z_][a-z0-9_]*)")


@dataclass(frozen=True)
class Problem:
    line: int
    text: str
    why: str


# Shell blocks ----------------------------------------------------------------------------------------


def console_commands(text: str) -> tuple[str, dict[int, int]]:
    """A console transcript's commands as a script: ``$ `` prompts taken off, output lines left
    out (a command continues over a trailing backslash or an open quote). Also the map from the
    script's line numbers to the block's."""
    script: list[str] = []
    line_map: dict[int, int] = {}
    continuing = False
    for number, line in enumerate(text.splitlines()):
        if line.startswith("$ ") or line == "$":
            command, continuing = line[2:], True
        elif continuing:
            command = line
        else:
            continue
        script.append(command)
        line_map[len(script) - 1] = number
        joined = "\n".join(script)
        continuing = joined.endswith("\\") or not _complete(joined)
    return "\n".join(script) + "\n", line_map


def _complete(script: str) -> bool:
    try:
        shlex.split(script.replace("\\\n", " "), comments=True)
    except ValueError:
        return False
    return True


def bash_syntax_problems(block: CodeBlock) -> list[Problem]:
    if block.language in CONSOLE_LANGUAGES:
        script, line_map = console_commands(block.text)
    else:
        script, line_map = block.text, {n: n for n in range(block.text.count("\n") + 1)}
    result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False, timeout=30)
    if result.returncode == 0:
        return []
    lines = block.text.splitlines() or [""]
    problems = []
    for message in result.stderr.strip().splitlines():
        found = re.search(r"line (\d+):", message)
        # bash names the line after the last for an unexpected end of file
        offset = line_map.get(int(found.group(1)) - 1, len(lines) - 1) if found else 0
        offset = min(offset, len(lines) - 1)
        problems.append(Problem(block.line + offset, lines[offset], message))
    return problems


@dataclass(frozen=True)
class Command:
    line: int
    text: str
    words: list[str]


def shell_commands(text: str, first_line: int) -> Iterator[Command]:
    """Each simple command of a script (a pipeline's parts separately), with its first line.
    A ``<name>`` placeholder (``/ping/<key>/``) is read as one, not as a redirection."""
    text = re.sub(r"<([A-Za-z_][A-Za-z0-9_-]*)>", r"{\1}", text)
    buffer: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines()):
        if not buffer:
            start = number
        buffer.append(line)
        joined = "\n".join(buffer)
        if joined.endswith("\\") or not _complete(joined):
            continue
        lexer = shlex.shlex(joined.replace("\\\n", " "), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for word in [*lexer, ";"]:
            if word in {";", "|", "||", "&&", "&", "(", ")", "$(", "`"}:
                if words:
                    yield Command(first_line + start, joined, words)
                words = []
            else:
                words.append(word)
        buffer = []


def page_variables(text: str) -> dict[str, str]:
    """``NAME=value`` assignments on the page, in its shell blocks and code spans (the first wins)."""
    variables: dict[str, str] = {}
    sources = [block.text for block in code_blocks(text) if block.language in COMMAND_LANGUAGES]
    sources += [item.value for item in inline_items(text) if item.kind == "code"]
    for source in sources:
        for name, value in re.findall(r"(?:^|[\s;])(?:export\s+)?([A-Z][A-Z0-9_]*)=(\"[^\"]*\"|'[^']*'|\S+)", source):
            variables.setdefault(name, value.strip("\"'"))
    return variables


def expand(value: str, variables: dict[str, str], depth: int = 0) -> str:
    if depth > 5:
        return value
    expanded = VARIABLE.sub(lambda m: variables.get(m.group(1), m.group(0)), value)
    return expanded if expanded == value else expand(expanded, variables, depth + 1)


# curl ------------------------------------------------------------------------------------------------

# curl's options that take a value (the rest are flags).
CURL_VALUE_OPTIONS = set("HXdoumAebcwKxTFEr") | {
    "--header", "--request", "--data", "--data-raw", "--data-binary", "--data-urlencode", "--json", "--form",
    "--output", "--user", "--max-time", "--connect-timeout", "--retry", "--retry-delay", "--retry-max-time",
    "--user-agent", "--referer", "--cookie", "--cookie-jar", "--write-out", "--config", "--proxy",
    "--upload-file", "--cert", "--key", "--cacert", "--resolve", "--url", "--oauth2-bearer", "--range",
}  # fmt: skip
CURL_DATA_OPTIONS = set("dFT") | {
    "--data", "--data-raw", "--data-binary", "--data-urlencode", "--json", "--form", "--upload-file",
}  # fmt: skip


@dataclass(frozen=True)
class CurlCall:
    method: str | None  # None: chosen by a shell variable
    urls: list[str]


def curl_call(words: list[str]) -> CurlCall:
    method: str | None = None
    data = get = head = False
    urls: list[str] = []
    index = 1
    while index < len(words):
        word = words[index]
        index += 1
        if word.startswith("--"):
            name, _, attached = word.partition("=")
            value = None
            if name in CURL_VALUE_OPTIONS:
                value = attached or (words[index] if index < len(words) else "")
                index += 0 if attached else 1
            if name == "--url" and value:
                urls.append(value)
            elif name == "--request" and value:
                method = value
            data |= name in CURL_DATA_OPTIONS
            get |= name == "--get"
            head |= name == "--head"
            continue
        if word.startswith("-") and len(word) > 1:
            for position, letter in enumerate(word[1:], start=1):
                if letter in CURL_VALUE_OPTIONS:
                    value = word[position + 1 :] or (words[index] if index < len(words) else "")
                    index += 0 if word[position + 1 :] else 1
                    if letter == "X":
                        method = value
                    data |= letter in CURL_DATA_OPTIONS
                    break
                get |= letter == "G"
                head |= letter == "I"
            continue
        urls.append(word)
    if method is None:
        method = "HEAD" if head else "GET" if get or not data else "POST"
    return CurlCall(None if "$" in method else method.upper(), urls)


@functools.cache
def api_paths() -> dict[str, set[str]]:
    """The schema's paths and the methods of each."""
    schema = yaml.safe_load(OPENAPI_FILE.read_text())
    methods = {"get", "post", "put", "patch", "delete", "head", "options"}
    return {path: {m.upper() for m in item if m in methods} for path, item in schema["paths"].items()}


def _segments_match(template: str, path: str) -> bool:
    wanted, given = template.split("/"), path.split("/")
    if len(wanted) != len(given):
        return False
    for expected, actual in zip(wanted, given, strict=True):
        if expected.startswith("{") and expected.endswith("}"):
            if not actual:
                return False
        elif expected != actual:
            return False
    return True


def ours(url: str) -> str | None:
    """The path of a URL of ETL Monitor's, or None for another service's."""
    leading = re.match(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?(.*)$", url)
    if leading:
        name, rest = leading.groups()
        if OTHER_SERVICES.search(name.upper()):
            return None
        if re.search(r"(URL|BASE|HOST)$", name.upper()):
            return rest or "/"  # the site's address, like $ETL_MONITOR_URL
        return url  # a prefix the page never defines: endpoint_problem says so
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname or ""
    port = parts.netloc.rpartition(":")[2] if ":" in parts.netloc else ""
    if "etl" in host or port == "8000" or (host in {"localhost", "127.0.0.1"} and not port):
        return parts.path or "/"
    return None


def endpoint_problem(method: str | None, path: str) -> str | None:
    """Why ``method path`` is not an endpoint of ETL Monitor, or None if it is."""
    path = path.split("?")[0].split("#")[0]
    if path.startswith("$"):
        name = VARIABLE.match(path).group(1)  # type: ignore[union-attr]
        return f"{path}: ${name} is defined nowhere on the page (e.g. `{name}=https://etl.example.com/api/v1`)"
    if POSITIONAL.search(path):
        return None  # built from a shell function's arguments: the calls name the real path
    if path.startswith("/api/v1/"):
        matching = [template for template in api_paths() if _segments_match(template, path)]
        if not matching:
            return f"{path} is not a path of the API (docs/api/openapi.yaml)"
        # /api/v1/loaders/import/ is that path, not /api/v1/loaders/{loader_code}/: the template
        # with the fewest parameters wins, as in the URLconf.
        fewest = min(template.count("{") for template in matching)
        allowed = set().union(*(api_paths()[t] for t in matching if t.count("{") == fewest))
        if "GET" in allowed:
            allowed.add("HEAD")
        if method is not None and method not in allowed:
            return f"{method} {path}: the API has only {', '.join(sorted(allowed))} there"
        return None
    concrete = "/".join("placeholder" if PLACEHOLDER.search(segment) else segment for segment in path.split("/"))
    try:
        resolve(concrete)
    except Resolver404:
        return f"{path} is no URL of ETL Monitor (neither the API schema's nor the URLconf's)"
    return None


# The checks of one page ------------------------------------------------------------------------------


def curl_problems(command: Command, variables: dict[str, str]) -> list[str]:
    for index, word in enumerate(command.words):
        if word == "curl" or word.endswith("/curl"):
            call = curl_call(command.words[index:])
            paths = [path for url in call.urls if (path := ours(expand(url, variables))) is not None]
            return [f"curl: {why}" for path in paths if (why := endpoint_problem(call.method, path))]
    return []


def manage_py_problems(text: str, commands: dict[str, str]) -> list[str]:
    return [f"manage.py has no command {name!r}" for name in MANAGE_PY.findall(text) if name not in commands]


def sample_problems(page: Path) -> list[str]:
    text = page.read_text()
    variables = page_variables(text)
    commands = get_commands()
    problems: list[Problem] = []
    for block in code_blocks(text):
        lines = block.text.splitlines()
        if block.language == "json":
            try:
                json.loads(block.text)
            except json.JSONDecodeError as exc:
                source = lines[exc.lineno - 1] if exc.lineno <= len(lines) else ""
                problems.append(Problem(block.line + exc.lineno - 1, source, f"invalid JSON: {exc.msg}"))
        if block.language in SHELL_LANGUAGES | CONSOLE_LANGUAGES:
            problems += bash_syntax_problems(block)
        for number, source in enumerate(lines):  # any block: a Kubernetes Job, a Dockerfile, output
            problems += [Problem(block.line + number, source, why) for why in manage_py_problems(source, commands)]
        if block.language not in COMMAND_LANGUAGES:
            continue
        if block.language in SHELL_LANGUAGES:
            script, line_map = block.text, {n: n for n in range(len(lines))}
        elif block.language == "cron":
            script = "\n".join(CRON_SCHEDULE.sub("", line) for line in lines)
            line_map = {n: n for n in range(len(lines))}
        else:  # a transcript: only its `$ ` commands
            script, line_map = console_commands(block.text)
        for command in shell_commands(script, 0):
            line = line_map.get(command.line, 0)
            problems += [Problem(block.line + line, lines[line], why) for why in curl_problems(command, variables)]
    for item in inline_items(text):
        if item.kind == "code":
            problems += [Problem(item.line, item.value, why) for why in manage_py_problems(item.value, commands)]
    return [
        f"{page_name(page)}:{p.line}: {p.why}\n    {p.text.strip()}" for p in sorted(problems, key=lambda p: p.line)
    ]


@pytest.mark.parametrize("page", doc_pages(), ids=page_name)
def test_every_code_sample_is_valid(page: Path) -> None:
    problems = sample_problems(page)
    assert not problems, "Invalid code samples:\n" + "\n".join(problems)


# The checker itself, on a page made for it -----------------------------------------------------------

SAMPLE_PAGE = """# Samples

Examples use `API=https://etl.example.com/api/v1`.

```json
{"loader_code": "SALES-DAILY",}
```

```sh
if true; then echo unfinished
```

```console
$ curl -s "$API/loaders/"
HTTP/1.1 200 OK (the output is not shell)
$ curl -s -X DELETE "$API/signals/"
$ python manage.py no_such_command
```

```cron
30 2 * * *  curl -fsS https://etl.example.com/ping/<key>/SALES-DAILY/start
15 3 * * *  curl -fsS https://etl.example.com/pings/<key>/SALES-DAILY
```

```sh
curl -s -H "Authorization: Token $TOKEN" "$API/loaders/{loader_code}/versions/"
curl -s -d '{"a": 1}' "$API/whoami/" && curl -s -X DELETE "$API/loaders/import/"
curl -s "$API/nope/" | jq .
curl -s https://grafana.example.com/api/datasources
curl -s "$UNDEFINED/loaders/"
curl -s http://127.0.0.1:8000/healthz && curl -sI http://127.0.0.1:8000/api/v1/runs/$RUN_ID/
```

Then `python manage.py docs_schema` and `manage.py nope`.

```yaml
command: ["python", "manage.py", "migrat"]
```
"""


def test_it_names_each_invalid_sample_with_its_line(tmp_path: Path) -> None:
    page = tmp_path / "samples.md"
    page.write_text(SAMPLE_PAGE)

    problems = [problem.split("\n")[0].removeprefix(f"{page}:") for problem in sample_problems(page)]

    assert problems == [
        "6: invalid JSON: Expecting property name enclosed in double quotes",
        "10: bash: line 2: syntax error: unexpected end of file",
        "16: curl: DELETE /api/v1/signals/: the API has only GET, HEAD, POST there",
        "17: manage.py has no command 'no_such_command'",
        "22: curl: /pings/{key}/SALES-DAILY is no URL of ETL Monitor (neither the API schema's nor the URLconf's)",
        "27: curl: POST /api/v1/whoami/: the API has only GET, HEAD there",
        "27: curl: DELETE /api/v1/loaders/import/: the API has only POST there",
        "28: curl: /api/v1/nope/ is not a path of the API (docs/api/openapi.yaml)",
        "30: curl: $UNDEFINED/loaders/: $UNDEFINED is defined nowhere on the page "
        "(e.g. `UNDEFINED=https://etl.example.com/api/v1`)",
        "34: manage.py has no command 'nope'",
        "37: manage.py has no command 'migrat'",
    ]


def test_curl_options_decide_the_method() -> None:
    assert curl_call(["curl", "-s", "https://x/"]).method == "GET"
    assert curl_call(["curl", "-d", "{}", "https://x/"]).method == "POST"
    assert curl_call(["curl", "-G", "--data-urlencode", "q=1", "https://x/"]).method == "GET"
    assert curl_call(["curl", "-XPATCH", "https://x/"]).method == "PATCH"
    assert curl_call(["curl", "--request=PUT", "https://x/"]).method == "PUT"
    assert curl_call(["curl", "-fsS", "-m", "10", "-X", "$1", "https://x/"]).method is None
    assert curl_call(["curl", "-sI", "https://x/"]).method == "HEAD"
    assert curl_call(["curl", "-OJ", "-H", "A: b", "https://x/", "-F", "file=@a.xlsx"]) == CurlCall(
        "POST", ["https://x/"]
    )
