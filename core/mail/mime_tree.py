"""The MIME tree of a well-formed message, built without the stdlib's feed parser.

``email.feedparser`` reads a message line by line through a stack of
generators and compiles a regular expression for every multipart boundary
(each message has its own): on ordinary mail that is three quarters of
parsing a body. :func:`mime_tree` builds the same ``email.message.Message``
tree (compat32: header values as the feed parser stores them, payloads as
text with surrogate escapes) by splitting on header/body separators and
boundary lines with string methods. It only takes the well-formed shape:
header blocks of fields and continuation lines ended by an empty line, and
multiparts whose boundary is declared, opened and closed; nothing of type
``message/*``, no mbox ``From`` line. For anything else it returns None and
the caller uses the stdlib parser, so the result never differs from it (the
tests compare both over the mail corpus).
"""

from __future__ import annotations

import re
from email.message import Message
from email.policy import compat32

_FIELD = re.compile(r"[!-9;-~]+:")  # the feed parser's own rule: no space before the colon
_MAX_DEPTH = 20


def mime_tree(raw: bytes) -> Message | None:
    """The stdlib parser's tree of ``raw`` (compat32), or None when it is not well-formed."""
    text = raw.decode("ascii", "surrogateescape")
    if text.startswith("From "):
        return None
    return _part(text, 0)


def _part(text: str, depth: int) -> Message | None:
    if depth > _MAX_DEPTH:
        return None
    split = _split_headers(text)
    if split is None:
        return None
    fields, body = split
    message = Message()
    for lines in fields:
        message.set_raw(*compat32.header_source_parse(lines))  # as the feed parser does
    maintype = message.get_content_maintype()
    if maintype == "message":
        return None
    if maintype != "multipart":
        message.set_payload(body)
        return message
    boundary = message.get_boundary()
    if not boundary:
        return None
    parts = _split_parts(body, boundary)
    if parts is None:
        return None
    if not parts:
        return None
    for part in parts:
        child = _part(part, depth + 1)
        if child is None:
            return None
        message.attach(child)
    return message


def _split_headers(text: str) -> tuple[list[list[str]], str] | None:
    """The header fields (each a list of its source lines) and the body after the empty
    line; None unless every line before it is a field or a continuation."""
    fields: list[list[str]] = []
    position = 0
    while True:
        end = text.find("\n", position)
        if end < 0:
            return None  # no empty line: headers only, or cut off
        line = text[position : end + 1]
        position = end + 1
        if line in ("\n", "\r\n"):
            return fields, text[position:]
        if line[0] in " \t":
            if not fields:
                return None
            fields[-1].append(line)
        elif _FIELD.match(line):
            fields.append([line])
        else:
            return None


def _split_parts(body: str, boundary: str) -> list[str] | None:
    """The parts between the boundary lines (each without the line end before the next
    boundary line, as the feed parser gives them); None unless the multipart is closed."""
    opening, closing = "--" + boundary, "--" + boundary + "--"
    parts: list[str] = []
    start: int | None = None  # where the current part began (None: in the preamble)
    position = 0
    while position < len(body):
        end = body.find("\n", position)
        line_end = len(body) if end < 0 else end + 1
        line = body[position:line_end].rstrip("\r\n").rstrip(" \t")
        if line.startswith("--") and line in (opening, closing):
            if start is not None:
                parts.append(_without_line_end(body[start:position]))
            if line == closing:
                return parts
            start = line_end
        position = line_end
    return None


def _without_line_end(part: str) -> str:
    if part.endswith("\r\n"):
        return part[:-2]
    if part.endswith("\n") or part.endswith("\r"):
        return part[:-1]
    return part
