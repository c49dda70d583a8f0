"""Log context end to end: a call's lines carry its linkedid, a mailbox's its name."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from crmcomms.app import mailbox_worker
from crmcomms.config import MailboxSettings
from crmcomms.keys import TELEPHONY
from crmcomms.logs import ContextFilter
from crmcomms.mail.sync import SyncTuning
from crmcomms.pbx_events import DialEnd
from crmcomms.services import Services
from tests.conftest import free_port
from tests.integration.telephony_harness import facts, running_daemon
from tests.mail_servers import running
from tests.waits import wait_for_event, wait_until


async def test_a_line_about_a_call_carries_its_linkedid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(ContextFilter())
    async with running_daemon(tmp_path) as daemon:
        telephony = daemon.client.app[TELEPHONY]
        feed = telephony.tracker.feed

        def breaking(message: Any) -> Any:
            if isinstance(message, DialEnd):
                logging.getLogger("crmcomms.telephony.tracker").warning("about to fail")
                raise RuntimeError("a tracker bug")
            return feed(message)

        telephony.tracker.feed = breaking  # type: ignore[method-assign]
        await daemon.replay("inbound-direct-answered")
        await daemon.settle()
    linkedid = facts("inbound-direct-answered")["linkedid"]
    about = [r for r in caplog.records if r.getMessage() in ("about to fail",)]
    about += [r for r in caplog.records if r.getMessage().startswith("skipped an AMI item")]
    assert len(about) >= 2
    assert {getattr(r, "linkedid", None) for r in about} == {linkedid}
    startup = [r for r in caplog.records if r.name.startswith("crmcomms.ami")]
    assert all(not hasattr(r, "linkedid") for r in startup)


async def test_a_line_about_a_mailbox_carries_its_name(
    svc: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(ContextFilter())
    box = MailboxSettings.model_validate(
        {
            "name": "support",
            "address": "support@company.test",
            "imap_host": "127.0.0.1",
            "imap_port": free_port(),  # nobody listens: the worker logs and retries
            "imap_tls": "none",
            "username": "u",
            "password": "p",
        }
    )
    worker = mailbox_worker(svc, box, SyncTuning(backoff_initial=60.0))
    with caplog.at_level(logging.WARNING):
        async with running(worker.run):

            async def retried() -> bool:
                return any("retrying" in r.getMessage() for r in caplog.records)

            await wait_until(retried, what="a logged retry")
            # then the bodies pass the error triggers: stop with no query in flight
            await wait_for_event(worker.bodies_done, what="the bodies pass after the error")
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert {getattr(r, "mailbox", None) for r in retries} == {"support"}
