"""Click-to-dial: AMI Originate from the agent's own extension to a customer number.

Asterisk rings the agent's phone first (``Channel: PJSIP/101``); when the agent
answers, the dialplan (``originate_context``) dials the customer. ``Async: true``
makes Asterisk answer at once; the call itself then shows up as AMI events like
any other call (its Linkedid is the agent channel's Uniqueid).

Who sees which caller ID (Asterisk 13+, chan_pjsip):

- The Originate's ``CallerID`` header would set *both* the agent channel's caller
  ID and its connected line (``pbx_outgoing_attempt`` in main/pbx.c). Dial()
  copies the calling channel's caller ID into the carrier channel's connected
  line, and chan_pjsip builds the outgoing INVITE's From from the connected line
  (``caller_id_outgoing_request`` in res/res_pjsip_caller_id.c). So a customer
  number put there reaches the carrier as our From. We send no ``CallerID``.
- The agent channel keeps the caller ID chan_pjsip gave it (the endpoint's
  ``callerid``), or takes the configured company CLI through ``CALLERID(num)``/
  ``CALLERID(name)``: the dialplan then presents what it presents for a call
  dialled on the phone.
- The agent's phone shows the agent channel's connected line (the From of the
  INVITE to the phone): ``CONNECTEDLINE(num,i)``/``(name,i)`` say "CRM: <number>";
  ``i`` sets it without a protocol update, as the phone has not been called yet.
- ``CRM_DIAL_NUMBER`` (what the dialplan dials, also in ``Exten``),
  ``CRM_CUSTOMER_NUMBER`` (E.164 when known) and, with a company CLI,
  ``CRM_OUTBOUND_CLI`` are plain channel variables for the dialplan; the tracker
  learns the callee from the VarSet of ``CRM_DIAL_NUMBER``.

All of them travel in one ``Variable:`` header, ``name=value`` pairs split on
commas outside quotes and brackets (``man_do_variable_value`` in main/manager.c),
set before the phone is dialled; names ending in ``)`` write dialplan functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from core.errors import InvalidInput
from core.phones import format_for_dialling, normalise
from crmcomms.ami.errors import AmiActionError, AmiNotConnected, AmiTimeout
from crmcomms.config import AmiSettings
from crmcomms.pbx_events import DIAL_NUMBER_VARIABLE

CUSTOMER_NUMBER_VARIABLE = "CRM_CUSTOMER_NUMBER"
OUTBOUND_CLI_VARIABLE = "CRM_OUTBOUND_CLI"
_UNSAFE = re.compile(r'[",\\()\[\]\x00-\x1f\x7f]+')
"""What Asterisk's Variable header parsing splits on or strips (and control characters)."""


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


def header_safe(text: str) -> str:
    """``text`` as one value of the Variable header: no separators, quotes or brackets."""
    return " ".join(_UNSAFE.sub(" ", text).split())


def originate_variables(
    settings: AmiSettings, dialled: str, customer: str, label: str
) -> dict[str, str]:
    """The channel variables and functions the Originate sets on the agent's channel."""
    variables = {
        DIAL_NUMBER_VARIABLE: dialled,
        CUSTOMER_NUMBER_VARIABLE: customer,
        "CONNECTEDLINE(num,i)": dialled,
        "CONNECTEDLINE(name,i)": header_safe(f"CRM: {label or dialled}"),
    }
    if settings.outbound_callerid:
        variables[OUTBOUND_CLI_VARIABLE] = settings.outbound_callerid
        variables["CALLERID(num)"] = settings.outbound_callerid
        if settings.outbound_callerid_name:
            variables["CALLERID(name)"] = header_safe(settings.outbound_callerid_name)
    return variables


class Dialer:
    """Places click-to-dial calls through the AMI link."""

    def __init__(self, ami: ActionSender, settings: AmiSettings, region: str) -> None:
        self._ami = ami
        self._settings = settings
        self._region = region

    def originate_action(self, extension: str, number: str, label: str = "") -> dict[str, str]:
        """The Originate action for ``extension`` calling ``number``.

        ``label`` (e.g. the contact's name) is what the agent's phone shows after
        "CRM: "; the number dialled when empty.
        """
        parsed = normalise(number, self._region)
        if parsed is None:
            raise InvalidInput("to", f"{number!r} is not a phone number")
        dialled = format_for_dialling(number, self._region)
        variables = originate_variables(self._settings, dialled, parsed.e164 or dialled, label)
        return {
            "Action": "Originate",
            "Channel": agent_channel(self._settings, extension),
            "Context": self._settings.originate_context,
            "Exten": dialled,
            "Priority": "1",
            "Timeout": str(self._settings.originate_timeout * 1000),
            "Async": "true",
            "Variable": ",".join(f"{name}={value}" for name, value in variables.items()),
        }

    async def originate(self, extension: str, number: str, label: str = "") -> OriginateResult:
        """Ask Asterisk to ring ``extension`` and then dial ``number``."""
        action = self.originate_action(extension, number, label)
        reply = await send_action(self._ami, action, "the dial request", "the call")
        return OriginateResult(extension, number, action["Exten"], reply.get("Message", ""))


async def send_action(
    ami: ActionSender, action: dict[str, str], request: str = "the request", what: str = "it"
) -> dict[str, str]:
    """Send one action; AMI failures become HTTP errors (503 link down, 504 no answer,
    502 refused, naming ``request`` and ``what`` was refused)."""
    try:
        return await ami.send_action(action)
    except AmiNotConnected as exc:
        raise web.HTTPServiceUnavailable(reason="the PBX link is down; try again") from exc
    except AmiTimeout as exc:
        raise web.HTTPGatewayTimeout(reason=f"the PBX did not answer {request}") from exc
    except AmiActionError as exc:
        raise web.HTTPBadGateway(reason=f"the PBX refused {what}: {exc}") from exc
