"""crmcomms_pop_latency_seconds: fed for every pop when a capture is replayed to the daemon."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.telephony_harness import running_daemon


def _sample(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name} not in /metrics"
    return float(found.group(1))


async def test_every_pop_observed_from_its_ami_block(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon.listening("sue") as listeners:
        await daemon.replay("queue-ringall-102-answers")
        await daemon.settle()
        pops = await listeners["sue"].wait_for("call.ringing")
        text = await (await daemon.client.get("/metrics")).text()
    published = _sample(text, 'crmcomms_push_events_total{type="call.ringing"}')
    assert published == len(pops) >= 2  # the queue rings 101 and 102
    assert _sample(text, "crmcomms_pop_latency_seconds_count") == published
    assert 0 < _sample(text, "crmcomms_pop_latency_seconds_sum") < 10 * published
    assert _sample(text, 'crmcomms_pop_latency_seconds_bucket{le="+Inf"}') == published
