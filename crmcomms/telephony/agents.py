"""Which channels are agents' phones: ``PJSIP/101-0000000f`` -> ``"101"``.

One definition for everything that reads channel names (the call tracker on
AMI events, the CDR backfill on CDR rows). ``ami.agent_channel_patterns``
name agent phones: ``{ext}`` marks the extension (``PJSIP/{ext}-`` matches
``PJSIP/101-0000001d``) and must match ``extension`` (digits), so trunks like
``PJSIP/carrier-0000001c`` are not agents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

DEFAULT_PATTERNS = ("PJSIP/{ext}-", "SIP/{ext}-")


def agent_regex(pattern: str, extension: str = r"\d+") -> re.Pattern[str]:
    """The regex of one agent channel pattern; the extension is group ``ext``."""
    prefix, sep, suffix = pattern.partition("{ext}")
    if not sep:
        raise ValueError(f"agent pattern {pattern!r} has no {{ext}} placeholder")
    return re.compile(f"{re.escape(prefix)}(?P<ext>{extension}){re.escape(suffix)}")


def agent_matcher(
    patterns: Sequence[str] = DEFAULT_PATTERNS, extension: str = r"\d+"
) -> Callable[[str], str | None]:
    """A function giving the agent extension of a channel name, or None."""
    regexes = [agent_regex(pattern, extension) for pattern in patterns]

    def agent_of(channel: str) -> str | None:
        for regex in regexes:
            match = regex.match(channel)
            if match is not None:
                return match.group("ext")
        return None

    return agent_of
