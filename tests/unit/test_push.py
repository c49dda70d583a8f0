"""PushHub: numbering, audience routing, catch-up with since/epoch, overflow."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from crmcomms.push import Audience, EndReason, HubClosedError, PushHub, Subscription


@dataclass(frozen=True)
class Viewer:
    """Test identity shaped like core.agents.AgentIdentity."""

    id: int
    name: str
    role: str
    extensions: frozenset[str]

    @property
    def sees_everything(self) -> bool:
        return self.role in {"supervisor", "admin"}


AGENT_101 = Viewer(1, "ann", "agent", frozenset({"101"}))
AGENT_102 = Viewer(2, "bob", "agent", frozenset({"102"}))
AGENT_TWO_PHONES = Viewer(3, "cy", "agent", frozenset({"101", "103"}))
SUPERVISOR = Viewer(4, "sue", "supervisor", frozenset({"200"}))
ADMIN = Viewer(5, "al", "admin", frozenset())


def drain(subscription: Subscription) -> list[dict[str, Any]]:
    """Everything queued for a subscription, decoded."""
    frames = []
    while not subscription.queue.empty():
        frames.append(orjson.loads(subscription.queue.get_nowait()))
    return frames


def decoded(frames: Iterable[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(frame) for frame in frames]


def ring(hub: PushHub, extension: str, n: int = 1) -> None:
    for _ in range(n):
        hub.publish("call.ringing", {"agent": extension}, Audience.of(extension))


async def test_seq_is_global_monotonic_from_one() -> None:
    hub = PushHub()
    assert hub.current_seq == 0
    seqs = [hub.publish("call.ringing", {}, Audience.of(str(i % 3))).seq for i in range(50)]
    assert seqs == list(range(1, 51))
    assert hub.current_seq == 50


async def test_frame_carries_type_seq_and_payload() -> None:
    hub = PushHub()
    event = hub.publish("email.received", {"message": {"id": 7}}, Audience.all())
    assert orjson.loads(event.frame) == {"type": "email.received", "seq": 1, "message": {"id": 7}}


async def test_unknown_type_and_reserved_keys_are_rejected_without_burning_a_seq() -> None:
    hub = PushHub()
    with pytest.raises(ValueError, match="unknown push event type"):
        hub.publish("call.rining", {}, Audience.all())
    with pytest.raises(ValueError, match="must not contain"):
        hub.publish("call.ringing", {"seq": 3}, Audience.all())
    with pytest.raises(TypeError):
        hub.publish("call.ringing", {"bad": object()}, Audience.all())
    assert hub.publish("call.ringing", {}, Audience.all()).seq == 1


async def test_agents_get_their_extensions_supervisors_and_admins_get_all() -> None:
    hub = PushHub()
    subs = {v.name: hub.subscribe(v, None, None) for v in (AGENT_101, AGENT_102, AGENT_TWO_PHONES)}
    subs["sue"] = hub.subscribe(SUPERVISOR, None, None)
    subs["al"] = hub.subscribe(ADMIN, None, None)
    ring(hub, "101")  # seq 1
    ring(hub, "102")  # seq 2
    hub.publish("call.ringing", {}, Audience.of("101", "103"))  # seq 3: one frame for cy
    hub.publish("task.created", {}, Audience.supervisors_only())  # seq 4
    hub.publish("email.received", {}, Audience.all())  # seq 5
    seen = {name: [f["seq"] for f in drain(sub)] for name, sub in subs.items()}
    assert seen == {
        "ann": [1, 3, 5],
        "bob": [2, 5],
        "cy": [1, 3, 5],
        "sue": [1, 2, 3, 4, 5],
        "al": [1, 2, 3, 4, 5],
    }


async def test_hello_comes_first_with_current_seq_and_epoch() -> None:
    hub = PushHub(epoch="e1")
    ring(hub, "101", 3)
    sub = hub.subscribe(AGENT_101, None, None)
    assert decoded(sub.initial_frames()) == [{"type": "hello", "seq": 3, "epoch": "e1"}]
    assert not sub.reload


async def test_since_catch_up_is_exact_and_filtered() -> None:
    hub = PushHub(epoch="e1")
    for i in range(10):
        ring(hub, "101" if i % 2 else "102")
    sub = hub.subscribe(AGENT_101, since=4, epoch="e1")
    ring(hub, "101")  # seq 11, live
    assert [f["seq"] for f in decoded(sub.initial_frames())] == [10, 6, 8, 10]  # hello seq 10
    assert [f["seq"] for f in drain(sub)] == [11]


async def test_since_equal_to_current_gives_nothing_and_since_zero_gives_all() -> None:
    hub = PushHub()
    ring(hub, "101", 3)
    assert hub.subscribe(SUPERVISOR, since=3, epoch=hub.epoch).backlog == ()
    assert [e.seq for e in hub.subscribe(SUPERVISOR, since=0, epoch=None).backlog] == [1, 2, 3]


async def test_gap_older_than_buffer_gives_reload() -> None:
    hub = PushHub(buffer_size=5)
    ring(hub, "101", 12)  # buffer holds 8..12
    kept = hub.subscribe(SUPERVISOR, since=7, epoch=hub.epoch)
    assert [e.seq for e in kept.backlog] == [8, 9, 10, 11, 12]
    lost = hub.subscribe(SUPERVISOR, since=6, epoch=hub.epoch)
    assert lost.reload and lost.backlog == ()
    assert decoded(lost.initial_frames())[1] == {"type": "reload", "seq": 12}


@pytest.mark.parametrize(("since", "epoch"), [(2, "old-process"), (99, None)])
async def test_foreign_epoch_or_future_since_gives_reload(since: int, epoch: str | None) -> None:
    hub = PushHub(epoch="new")
    ring(hub, "101", 5)
    sub = hub.subscribe(AGENT_101, since=since, epoch=epoch)
    assert sub.reload
    assert [f["type"] for f in decoded(sub.initial_frames())] == ["hello", "reload"]


async def test_overflow_ends_the_slow_client_only() -> None:
    hub = PushHub(queue_size=3)
    slow = hub.subscribe(AGENT_101, None, None)
    fast = hub.subscribe(SUPERVISOR, None, None)
    for _ in range(3):
        ring(hub, "101")
        drain(fast)
    assert not slow.ended
    ring(hub, "101")  # the fourth does not fit
    assert slow.end_reason is EndReason.OVERFLOW
    assert await slow.wait_ended() is EndReason.OVERFLOW
    assert hub.clients == 1 and hub.overflows == 1
    ring(hub, "101")
    assert [f["seq"] for f in drain(fast)] == [4, 5]
    assert fast.end_reason is None


async def test_publish_encodes_once_and_shares_the_frame() -> None:
    hub = PushHub()
    subs = [hub.subscribe(v, None, None) for v in (AGENT_101, SUPERVISOR, ADMIN)]
    event = hub.publish("call.answered", {"agent": "101"}, Audience.of("101"))
    for sub in subs:
        assert sub.queue.get_nowait() is event.frame
    assert hub.subscribe(SUPERVISOR, 0, None).backlog[0].frame is event.frame


async def test_unsubscribe_and_close() -> None:
    hub = PushHub()
    sub = hub.subscribe(AGENT_101, None, None)
    other = hub.subscribe(SUPERVISOR, None, None)
    hub.unsubscribe(sub)
    hub.unsubscribe(sub)
    assert hub.clients == 1 and sub.end_reason is EndReason.CLOSED
    ring(hub, "101")
    assert sub.queue.empty()
    hub.close()
    assert other.end_reason is EndReason.SHUTDOWN and hub.clients == 0
    with pytest.raises(HubClosedError):
        hub.subscribe(AGENT_101, None, None)
