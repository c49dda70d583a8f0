"""CPU priority of background work: the event loop (pops, websockets) comes first."""

from __future__ import annotations

import contextlib
import os
import threading

#: The niceness of background work (Argon2, mail parsing, imports): CFS then gives a
#: busy core to the loop about 9 times as often as to such a thread (weights 1024 and
#: 110), and the work still runs whenever the loop waits. (19, weight 15, was tried:
#: no difference in bench/abuse.py within its run-to-run noise, and more risk of
#: starving logins on a host busy with other processes.)
BACKGROUND_NICENESS = 10


def run_behind() -> None:
    """Lower the calling thread's CPU priority (and that of the threads it starts,
    such as libargon2's lanes), on Linux where a thread has its own niceness."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
