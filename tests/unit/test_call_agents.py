"""The one definition of a call's agents (core.calls.roles_of / agents_of) and the push
audience built on it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.calls import AgentRole, agents_of, roles_of
from crmcomms.telephony.calls import CallSnapshot, Transfer
from crmcomms.telephony.pops import audience_of
from tests.calls import snapshot

R = AgentRole
BASE = snapshot()

CASES: dict[str, tuple[CallSnapshot, dict[str, AgentRole]]] = {
    # the inbound caller and the DID are the customer's and the company's numbers
    "inbound, nobody rang": (BASE, {}),
    "inbound, queue ringall": (
        replace(BASE, agents_rung=("101", "102"), answered_by="102", talked=("102",)),
        {"101": R.RUNG, "102": R.RUNG | R.ANSWERED | R.TALKED},
    ),
    "outbound, placed": (
        replace(BASE, direction="outbound", caller="101", callee="0301234567", did=""),
        {"101": R.PLACED},
    ),
    "click-to-dial rings the agent first": (
        replace(
            BASE, direction="outbound", caller="101", callee="0301234567", agents_rung=("101",),
        ),
        {"101": R.RUNG | R.PLACED},
    ),
    "internal": (
        replace(
            BASE, direction="internal", caller="101", callee="103", agents_rung=("103",),
            answered_by="103", talked=("101", "103"),
        ),
        {"101": R.PLACED | R.TALKED, "103": R.RUNG | R.ANSWERED | R.TALKED | R.CALLED},
    ),
    "blind transfer": (
        replace(
            BASE, agents_rung=("102", "104"), answered_by="102", talked=("102", "104"),
            transfers=(Transfer("102", "104", "blind"),),
        ),
        {
            "102": R.RUNG | R.ANSWERED | R.TALKED | R.TRANSFERRED,
            "104": R.RUNG | R.TALKED | R.TRANSFER_TARGET,
        },
    ),
    "transfer with an unknown target": (
        replace(BASE, answered_by="102", transfers=(Transfer("102", "", "attended"),)),
        {"102": R.ANSWERED | R.TRANSFERRED},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_roles_of(case: str) -> None:
    call, expected = CASES[case]
    assert roles_of(call) == expected
    assert agents_of(call) == frozenset(expected)


@pytest.mark.parametrize("case", CASES)
def test_push_audience_is_the_same_set(case: str) -> None:
    call, expected = CASES[case]
    assert audience_of(call).extensions == frozenset(expected)
    assert audience_of(call, "105").extensions == frozenset(expected) | {"105"}
