"""Outside text made safe for where it goes: Slack mrkdwn, Jira wiki markup, one-line headers.

Loader names, rule messages, correlation ids, error texts, people's comments and Alertmanager's
labels and annotations reach Slack, Jira and email headers, and each of those parses some
characters. Slack turns ``<!channel>`` into a ping of the whole channel and
``<https://evil|Reset your password>`` into a link whose label hides where it goes; Jira's wiki
markup does the same with ``[Reset your password|https://evil]`` and loads ``!https://evil/p.png!``
as an image; a CR or LF ends an email header (Django refuses the subject and the message is lost).
So every renderer passes outside text through one of these functions and writes only its own
markup (our links, bold labels, headings) around it.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL and the C1 controls: nothing a reader needs, and PostgreSQL
# refuses NUL in text and JSON.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# What is left that breaks a line or a header once control_strip has run.
_LINE_BREAKING = re.compile(r"[\t\n\u2028\u2029]+")


def control_strip(text: str) -> str:
    """``text`` without control characters, keeping tab and newline (CR LF and CR become LF):
    what is safe to store and to show on several lines."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def one_line(text: str) -> str:
    """``text`` on one line: control characters go (``control_strip``), and every run of line
    breaks and tabs becomes one space. For whatever becomes a header or a title: an email
    subject, an incident title, a Slack header, a Jira summary."""
    return _LINE_BREAKING.sub(" ", control_strip(text)).strip()


def slack_escape(text: str) -> str:
    """Slack's documented escaping (https://api.slack.com/reference/surfaces/formatting#escaping):
    ``&``, ``<`` and ``>`` as HTML entities, so no mention, channel ping or link can be formed;
    Slack shows the characters as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Jira's wiki markup (Text Formatting Notation). Always special: braces (macros such as {code},
# {color}, {{monospace}}), brackets (links, [~mentions]), the bar (links' targets, table cells)
# and the exclamation mark (!image!). Phrase markers (*strong*, _emphasis_, -deleted-, +inserted+,
# ^superscript^, ~subscript~) act only at a word's edge, so a marker inside a word
# (SALES-DAILY, 2026-11-29, snake_case) is left as it is.
_WIKI_ALWAYS = frozenset("{}[]|!")
_WIKI_PHRASE = frozenset("*_-+^~")
_WIKI_LINE_START = re.compile(r"^(\s*)(h[1-6]|bq)\.", re.IGNORECASE)


def _wiki_line(line: str) -> str:
    out: list[str] = []
    for index, char in enumerate(line):
        before = line[index - 1] if index else ""
        after = line[index + 1] if index + 1 < len(line) else ""
        inside_word = before.isalnum() and after.isalnum()
        if (
            char in _WIKI_ALWAYS
            or (char in _WIKI_PHRASE and not inside_word)
            or (char == "?" and "?" in (before, after))  # ??citation??
            or (char == "#" and not line[:index].strip())  # a numbered list item
        ):
            out.append("\\" + char)
        else:
            out.append(char)
    # "h1. " and "bq. " at the start of a line make a heading or a quote.
    return _WIKI_LINE_START.sub(lambda m: f"{m.group(1)}{m.group(2)}\\.", "".join(out))


def wiki_escape(text: str, *, inline: bool = False) -> str:
    """``text`` shown as written in Jira's wiki markup: each special character escaped with a
    backslash. A backslash of the text itself becomes ``&#92;`` (Jira shows the entity as a
    backslash): escaped as ``\\\\`` it would be Jira's forced line break. ``inline`` (a table cell,
    a field label's value) puts the text on one line."""
    text = control_strip(text).replace("\t", " ").replace("\\", "&#92;")
    if inline:
        return _wiki_line(one_line(text))
    return "\n".join(_wiki_line(line) for line in text.split("\n"))
