"""The daily retention job: what ``[retention]`` says is old goes.

Once right after start and then every 24 hours, in one transaction of the
database worker: expired login tokens; done tasks older than
``tasks_done_days``; the text, HTML and raw message of e-mails older than
``mail_bodies_days`` (headers stay, so the history still shows who wrote when
about what; messages still to be sent and not yet parsed are never touched);
calls older than ``calls_days`` with their agents and contact links (the
recording files on the PBX stay). Counted in ``crmcomms_retention_deleted_total``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, or_, select, update

from core.mail.models import EmailMessage, EmailRaw
from core.models import ApiToken, Call, CallAgent, CallContact, Task, utcnow
from crmcomms.config import RetentionSettings
from crmcomms.services import Services

log = logging.getLogger(__name__)

DAY = 24 * 3600.0


def apply_retention(conn: Connection, policy: RetentionSettings, now: datetime) -> dict[str, int]:
    """Delete what is older than the policy allows; how many rows of each kind."""
    counts = {"tokens": _count(conn.execute(delete(ApiToken).where(ApiToken.expires_at <= now)))}
    if policy.tasks_done_days:
        cutoff = now - timedelta(days=policy.tasks_done_days)
        done = delete(Task).where(Task.done.is_(True), Task.done_at < cutoff)
        counts["tasks"] = _count(conn.execute(done))
    if policy.mail_bodies_days:
        counts["mail_bodies"] = _drop_bodies(conn, now - timedelta(days=policy.mail_bodies_days))
    if policy.calls_days:
        counts["calls"] = _drop_calls(conn, now - timedelta(days=policy.calls_days))
    return counts


def _count(result: Any) -> int:
    return max(int(getattr(result, "rowcount", 0) or 0), 0)


def _drop_bodies(conn: Connection, cutoff: datetime) -> int:
    old = select(EmailMessage.id).where(
        EmailMessage.sort_at < cutoff,
        EmailMessage.body_parsed.is_(True),
        or_(EmailMessage.state.is_(None), EmailMessage.state.in_(("sent", "failed"))),
    )
    raw = _count(conn.execute(delete(EmailRaw).where(EmailRaw.email_id.in_(old))))
    bodies = conn.execute(
        update(EmailMessage)
        .where(
            EmailMessage.id.in_(old),
            or_(EmailMessage.text.is_not(None), EmailMessage.html.is_not(None)),
        )
        .values(text=None, html=None)
    )
    return max(raw, _count(bodies))


def _drop_calls(conn: Connection, cutoff: datetime) -> int:
    old = select(Call.id).where(Call.started_at < cutoff)
    conn.execute(delete(CallAgent).where(CallAgent.call_id.in_(old)))
    conn.execute(delete(CallContact).where(CallContact.call_id.in_(old)))
    conn.execute(update(Task).where(Task.call_id.in_(old)).values(call_id=None))
    return _count(conn.execute(delete(Call).where(Call.started_at < cutoff)))


class RetentionWorker:
    """Applies ``[retention]`` after start and then once a day."""

    def __init__(self, svc: Services) -> None:
        self._svc = svc

    async def run(self) -> None:
        """Forever, until cancelled."""
        while True:
            await self.apply_once()
            await asyncio.sleep(DAY)

    async def apply_once(self) -> dict[str, int]:
        """One pass; logged when something was deleted."""
        policy = self._svc.settings.retention
        apply = functools.partial(apply_retention, policy=policy, now=utcnow())
        started = asyncio.get_running_loop().time()
        counts = await self._svc.db.run(lambda conn: apply(conn))
        seconds = asyncio.get_running_loop().time() - started
        self._svc.metrics.db_batch_latency.labels("retention").observe(seconds)
        for kind, count in counts.items():
            self._svc.metrics.retention_deleted.labels(kind).inc(count)
        if any(counts.values()):
            log.info("retention: %s", ", ".join(f"{k} {v}" for k, v in counts.items() if v))
        return counts
