"""The preview of an e-mail in a timeline: the first words of what is new in it.

Quoted text (``>`` lines and the "On ... wrote:" line before them), a forwarded or
original message below its marker line and the signature below ``-- `` are not
new; what is left is joined into one line, so a greeting does not fill the preview.
"""

from __future__ import annotations

import re

PREVIEW_CHARS = 200
# "On Mon, 1 Dec 2026, Ann <a@b> wrote:" / "Am 01.12.2026 um 10:00 schrieb Ann:" (may wrap)
_ATTRIBUTION = re.compile(r"^(on|am)\b.*\b(wrote|schrieb)\b[^:]*:\s*$", re.IGNORECASE)
_ORIGINAL = re.compile(
    r"^\s*(-{2,}\s*(original message|ursprüngliche nachricht|forwarded message|"
    r"weitergeleitete nachricht)\s*-{2,}|_{10,})\s*$",
    re.IGNORECASE,
)


def new_lines(text: str) -> list[str]:
    """The non-empty lines of ``text`` that are new (see the module's docstring)."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if raw.rstrip("\r") == "-- " or _ORIGINAL.match(line):
            break
        if line.startswith(">"):
            if lines and _ATTRIBUTION.match(lines[-1]):
                lines.pop()
            continue
        if line:
            lines.append(line)
    if lines and _ATTRIBUTION.match(lines[-1]):
        lines.pop()
    return lines


def preview(text: str | None, limit: int = PREVIEW_CHARS) -> str:
    """The first ``limit`` characters of the new text of ``text``, on one line."""
    joined = " ".join(new_lines(text or ""))
    joined = re.sub(r"\s+", " ", joined)
    return joined if len(joined) <= limit else joined[: limit - 1].rstrip() + "…"
