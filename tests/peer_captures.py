"""The peer project's recordings (cacofonisk, Asterisk 13-15, chan_sip) and our expectations.

``tests/fixtures/ami/peer/<group>/<name>.json`` holds one recorded AMI stream as
cacofonisk's file runner replays it (a JSON list of events); ``expected.json``
beside them says, per file, what our call log should show for each call (see the
README there). :func:`ami_bytes` turns a recording back into the bytes an AMI
connection carries, so it goes through the same framing as a live link.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crmcomms.ami.framing import encode_action
from crmcomms.telephony.calls import CallSnapshot

PEER = Path(__file__).parent / "fixtures" / "ami" / "peer"
BANNER = b"Asterisk Call Manager/2.10.4\r\n"
NOT_AMI = frozenset({"content"})  # cacofonisk's own key, not an AMI header


def expected() -> dict[str, dict[str, Any]]:
    """``expected.json``: what each recording must give, keyed by its path under ``peer/``."""
    loaded: dict[str, dict[str, Any]] = json.loads((PEER / "expected.json").read_text())
    return loaded


def ami_bytes(name: str) -> bytes:
    """The recording ``name`` (e.g. ``xfer_blind/xfer_blind_group.json``) as AMI bytes:
    a banner line, then one block per event."""
    events: list[dict[str, Any]] = json.loads((PEER / name).read_text())
    blocks = [
        encode_action({k: str(v) for k, v in event.items() if k not in NOT_AMI}) for event in events
    ]
    return BANNER + b"".join(blocks)


def mismatches(call: CallSnapshot | None, want: dict[str, Any]) -> list[str]:
    """How a logged call differs from one call of ``expected.json`` (empty: it matches).

    Each ``<field>_ok`` list adds accepted values; ``agents_rung`` must hold every
    expected agent and may hold those of ``agents_rung_optional``; ``transfer_to``
    null means no transfer, else the last transfer's target (or a ``transfer_ok``).
    """
    if call is None:
        return ["not logged"]
    problems = []
    got = {"direction": call.direction, "status": call.status, "answered_by": call.answered_by}
    for key, value in got.items():
        accepted = [want[key], *want.get(f"{key}_ok", [])]
        if value not in accepted:
            problems.append(f"{key} {value!r} not in {accepted}")
    if call.caller != want["caller"]:
        problems.append(f"caller {call.caller!r} != {want['caller']!r}")
    rung, needed = set(call.agents_rung), set(want["agents_rung"])
    allowed = needed | set(want.get("agents_rung_optional", []))
    if not needed <= rung <= allowed:
        span = f"{sorted(needed)}..{sorted(allowed)}"
        problems.append(f"agents_rung {sorted(rung)} not within {span}")
    problems += _transfer_mismatches(call, want)
    return problems


def _transfer_mismatches(call: CallSnapshot, want: dict[str, Any]) -> list[str]:
    targets = [t.to_ext for t in call.transfers]
    if want["transfer_to"] is None:
        return [f"transfers to {targets}, expected none"] if targets else []
    accepted = [want["transfer_to"], *want.get("transfer_ok", [])]
    if not targets or targets[-1] not in accepted:
        return [f"transfers to {targets}, expected the last in {accepted}"]
    return []
