"""The application keys under which app.py hands workers to the web routes.

They live here, beside the composition root and away from the workers, so that
``crmcomms.web`` reaches a worker only through its key and never imports a worker
module at run time (the types below are for the type checker only).
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from crmcomms.mail.smtp import OutboxWakeups
    from crmcomms.telephony.desk import CallDesk
    from crmcomms.telephony.dialer import Dialer
    from crmcomms.telephony.service import TelephonyService

#: The telephony worker (absent when ``[ami] enabled = false``).
TELEPHONY: web.AppKey[TelephonyService] = web.AppKey("telephony")
#: Call controls and live presence, run where the AMI link is (absent without AMI).
CALL_DESK: web.AppKey[CallDesk] = web.AppKey("call_desk")
#: Click-to-dial (absent when AMI is not enabled).
DIALER: web.AppKey[Dialer] = web.AppKey("dialer")
#: Wakes the outbox sender when the API queues a message.
OUTBOX_WAKEUPS: web.AppKey[OutboxWakeups] = web.AppKey("outbox_wakeups")
#: The processes that parse mail (app.py makes them when a mailbox is configured); the
#: API composes outgoing mail there too, so that a long message never holds the GIL.
MAIL_PARSERS: web.AppKey[Executor] = web.AppKey("mail_parsers", Executor)
