"""Click-to-dial: AMI Originate from the agent's own extension to a customer number.

Asterisk rings the agent's phone first (``Channel: PJSIP/101``); when the agent
answers, the dialplan (``originate_context``) dials the customer. ``Async: true``
makes Asterisk answer at once; the call itself then shows up as AMI events like
any other call (its Linkedid is the agent channel's Uniqueid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from core.errors import InvalidInput
from core.phones import format_for_dialling, normalise
from crmcomms.ami.errors import AmiActionError, AmiNotConnected, AmiTimeout
from crmcomms.config import AmiSettings


class ActionSender(Protocol):
    """What the dialer needs of the AMI client."""

    async def send_action(self, action: dict[str, str], timeout: float = 10) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """An accepted click-to-dial request."""

    extension: str
    number: str
    dialled: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {
            "state": "queued",
            "extension": self.extension,
            "number": self.number,
            "dialled": self.dialled,
            "message": self.message,
        }


def agent_channel(settings: AmiSettings, extension: str) -> str:
    """The dial string of an agent's phone, from the first channel pattern (PJSIP/101)."""
    pattern = settings.agent_channel_patterns[0]
    return pattern.replace("{ext}", extension).rstrip("-/")


class Dialer:
    """Places click-to-dial calls through the AMI link."""

    def __init__(self, ami: ActionSender, settings: AmiSettings, region: str) -> None:
        self._ami = ami
        self._settings = settings
        self._region = region

    def originate_action(self, extension: str, number: str, label: str = "") -> dict[str, str]:
        """The Originate action for ``extension`` calling ``number``."""
        if normalise(number, self._region) is None:
            raise InvalidInput("to", f"{number!r} is not a phone number")
        dialled = format_for_dialling(number, self._region)
        caller_id = f'"CRM: {label or dialled}" <{dialled}>'
        return {
            "Action": "Originate",
            "Channel": agent_channel(self._settings, extension),
            "Context": self._settings.originate_context,
            "Exten": dialled,
            "Priority": "1",
            "CallerID": caller_id.replace("\n", " "),
            "Timeout": str(self._settings.originate_timeout * 1000),
            "Async": "true",
        }

    async def originate(self, extension: str, number: str, label: str = "") -> OriginateResult:
        """Ask Asterisk to ring ``extension`` and then dial ``number``."""
        action = self.originate_action(extension, number, label)
        try:
            reply = await self._ami.send_action(action)
        except AmiNotConnected as exc:
            raise web.HTTPServiceUnavailable(reason="the PBX link is down; try again") from exc
        except AmiTimeout as exc:
            raise web.HTTPGatewayTimeout(reason="the PBX did not answer the dial request") from exc
        except AmiActionError as exc:
            raise web.HTTPBadGateway(reason=f"the PBX refused the call: {exc}") from exc
        return OriginateResult(extension, number, action["Exten"], reply.get("Message", ""))


DIALER: web.AppKey[Dialer] = web.AppKey("dialer", Dialer)
