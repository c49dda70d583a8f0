"""Requests forwarded to the AMI link's owner through PostgreSQL (crmcomms.forwarding).

Several :class:`Forwarder` instances in one test process stand for the daemons: each
has its own session, and ``owns`` says whether it holds the link. The owner runs a
request once and answers with its result or its error; nobody owning the link, the
asker withdraws the request (503) and nobody runs it later; an owner that took a
request and vanished gives 504 and the next owner does not run it again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from aiohttp import web

from core.errors import Conflict, InvalidInput
from crmcomms.ami.errors import AmiNotConnected
from crmcomms.forwarding import Forwarder, NoOwner
from tests.conftest import PostgresServer
from tests.integration.test_scaleout import _migrated as migrated
from tests.waits import wait_until

pytestmark = pytest.mark.postgres

SHORT = {"claim_timeout": 0.5, "answer_timeout": 1.0}


@pytest.fixture
async def url(postgres: PostgresServer) -> str:
    return await migrated(postgres)


@contextlib.asynccontextmanager
async def running(*forwarders: Forwarder) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(f.run()) for f in forwarders]
    try:
        await wait_until(lambda: all(f.connected for f in forwarders), what="sessions up")
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_each_request_runs_once_on_an_owner(url: str) -> None:
    """Two processes that both believe they own the link (a handover): every request
    runs exactly once, and the asker gets each one's own answer."""
    runs: list[int] = []

    async def echo(args: Mapping[str, Any]) -> dict[str, Any]:
        runs.append(args["n"])
        return {"n": args["n"], "twice": args["n"] * 2}

    owners = [Forwarder(url, lambda: True, **SHORT) for _ in range(2)]
    asker = Forwarder(url, lambda: False, **SHORT)
    for owner in owners:
        owner.register("echo", echo)
    async with running(asker, *owners):
        answers = await asyncio.gather(*(asker.call("echo", {"n": n}) for n in range(20)))
    assert answers == [{"n": n, "twice": n * 2} for n in range(20)]
    assert sorted(runs) == list(range(20))
    assert asker.forwarded == 20 and sum(o.served for o in owners) == 20


async def test_errors_come_back_as_themselves(url: str) -> None:
    """The owner's errors are raised by the asker: the core's, AMI's, HTTP ones."""
    errors: dict[str, Exception] = {
        "conflict": Conflict("the call is not in progress"),
        "invalid": InvalidInput("to", "is not a queue name"),
        "link": AmiNotConnected("down"),
        "forbidden": web.HTTPForbidden(reason="not your call"),
        "bug": RuntimeError("a bug"),
    }

    async def fail(args: Mapping[str, Any]) -> None:
        raise errors[args["kind"]]

    owner, asker = Forwarder(url, lambda: True), Forwarder(url, lambda: False)
    owner.register("fail", fail)
    async with running(owner, asker):
        with pytest.raises(Conflict, match="the call is not in progress"):
            await asker.call("fail", {"kind": "conflict"})
        with pytest.raises(InvalidInput) as invalid:
            await asker.call("fail", {"kind": "invalid"})
        assert (invalid.value.field, invalid.value.message) == ("to", "is not a queue name")
        with pytest.raises(AmiNotConnected):
            await asker.call("fail", {"kind": "link"})
        with pytest.raises(web.HTTPForbidden) as forbidden:
            await asker.call("fail", {"kind": "forbidden"})
        assert forbidden.value.reason == "not your call"
        with pytest.raises(web.HTTPInternalServerError):
            await asker.call("fail", {"kind": "bug"})


async def test_no_owner_withdraws_the_request(url: str) -> None:
    """Nobody owns the link: 503 after the claim timeout, and an owner that comes
    later does not run the withdrawn request."""
    runs: list[Any] = []
    owning = False

    async def record(args: Mapping[str, Any]) -> None:
        runs.append(args)

    owner = Forwarder(url, lambda: owning, **SHORT)
    asker = Forwarder(url, lambda: False, **SHORT)
    owner.register("record", record)
    async with running(owner, asker):
        with pytest.raises(NoOwner) as refused:
            await asker.call("record", {"n": 1})
        assert refused.value.status == 503
        owning = True
        await asker.call("record", {"n": 2})
    assert runs == [{"n": 2}]


async def test_owner_gone_after_taking_a_request(url: str) -> None:
    """The owner took the request and vanished: 504, and the next owner does not run it."""
    runs: list[str] = []
    taken = asyncio.Event()

    async def hang(args: Mapping[str, Any]) -> None:
        runs.append("first")
        taken.set()
        await asyncio.Event().wait()

    async def record(args: Mapping[str, Any]) -> None:
        runs.append("second")

    first = Forwarder(url, lambda: True, **SHORT)
    second_owns = False
    second = Forwarder(url, lambda: second_owns, **SHORT)
    asker = Forwarder(url, lambda: False, **SHORT)
    first.register("op", hang)
    second.register("op", record)
    async with running(second, asker):
        async with running(first):
            call = asyncio.create_task(asker.call("op", {}))
            await asyncio.wait_for(taken.wait(), 10)
        second_owns = True  # the first is gone; the second takes over
        with pytest.raises(web.HTTPGatewayTimeout):
            await call
    assert runs == ["first"]
