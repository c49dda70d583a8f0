"""The daily retention job deletes what [retention] says is old, and nothing else."""

from __future__ import annotations

import functools
from datetime import timedelta

from sqlalchemy import func, select

from core.agents import add_agent
from core.db import SessionFactory
from core.dbthread import DbWorker
from core.mail.models import EmailMessage, EmailRaw
from core.models import ApiToken, Call, CallAgent, Task, utcnow
from crmcomms.config import RetentionSettings
from crmcomms.retention import apply_retention

NOW = utcnow()


def _mail(n: int, days: int, state: str | None = None) -> EmailMessage:
    return EmailMessage(
        mailbox="sales", dedupe_key=f"k{n}", content_hash=f"h{n}", thread_id=f"t{n}",
        subject=f"mail {n}", sort_at=NOW - timedelta(days=days), text="body", html="<p>b</p>",
        state=state, direction="out" if state else "in",
    )  # fmt: skip


def _call(n: int, days: int) -> Call:
    started = NOW - timedelta(days=days)
    return Call(linkedid=f"L{n}", direction="inbound", status="answered", started_at=started)


async def test_retention(db: SessionFactory) -> None:
    async with db.begin() as session:
        agent = await add_agent(session, "alice", "password-1", ["101"])
        session.add_all([
            ApiToken(token_hash="a" * 64, agent_id=agent.id, expires_at=NOW - timedelta(hours=1)),
            ApiToken(token_hash="b" * 64, agent_id=agent.id, expires_at=NOW + timedelta(hours=1)),
            Task(title="old", done=True, done_at=NOW - timedelta(days=40)),
            Task(title="recent", done=True, done_at=NOW - timedelta(days=5)),
            Task(title="open", done=False),
            _mail(1, 60), _mail(2, 60, state="queued"), _mail(3, 5),
            _call(1, 400), _call(2, 10),
        ])  # fmt: skip
        await session.flush()
        ids = {m.subject: m.id for m in (await session.scalars(select(EmailMessage))).all()}
        session.add_all([EmailRaw(email_id=i, raw=b"raw") for i in ids.values()])
        old_call = await session.scalar(select(Call.id).where(Call.linkedid == "L1"))
        session.add(CallAgent(call_id=old_call, extension="101", roles=1, started_at=NOW))
    policy = RetentionSettings(tasks_done_days=30, mail_bodies_days=30, calls_days=365)
    worker = DbWorker(db.kw["bind"])
    counts = await worker.run(functools.partial(apply_retention, policy=policy, now=NOW))
    await worker.close()
    assert counts == {"tokens": 1, "tasks": 1, "mail_bodies": 1, "calls": 1}
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(ApiToken)) == 1
        tasks = set((await session.scalars(select(Task.title))).all())
        assert tasks == {"recent", "open"}
        mails = {m.subject: (m.text, m.html) for m in (await session.scalars(select(EmailMessage)))}
        assert mails == {
            "mail 1": (None, None),  # headers kept, bodies gone
            "mail 2": ("body", "<p>b</p>"),  # still to be sent: untouched
            "mail 3": ("body", "<p>b</p>"),
        }
        raws = set((await session.scalars(select(EmailRaw.email_id))).all())
        assert raws == {ids["mail 2"], ids["mail 3"]}
        assert (await session.scalars(select(Call.linkedid))).all() == ["L2"]
        assert await session.scalar(select(func.count()).select_from(CallAgent)) == 0
