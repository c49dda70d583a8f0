"""The mail parser processes: a process pool whose workers end with the daemon.

``concurrent.futures`` gives no such guarantee. With the forkserver start method
every worker holds the forkserver's "alive" pipe, and the forkserver only leaves
when every holder of that pipe has closed it: after ``kill -9`` of the daemon the
workers wait on their task queue forever and keep the forkserver (and the
resource tracker) alive. So each worker watches the daemon itself, by a pidfd
(Linux 5.3+; else it polls once a second), and exits when the daemon is gone;
then the forkserver and the resource tracker see their pipes close and exit too.
``PR_SET_PDEATHSIG`` would not do: a worker's parent is the forkserver, not the
daemon.
"""

from __future__ import annotations

import os
import select
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def parser_pool(workers: int) -> ProcessPoolExecutor:
    """A forkserver process pool of ``workers`` processes that end with this process."""
    return ProcessPoolExecutor(
        workers,
        mp_context=get_context("forkserver"),
        initializer=watch_parent,
        initargs=(os.getpid(),),
    )


def watch_parent(pid: int) -> None:
    """Pool initializer: end this process as soon as process ``pid`` ends."""
    threading.Thread(target=_exit_after, args=(pid,), name="watch-daemon", daemon=True).start()


def _exit_after(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(0)  # gone already
    except (AttributeError, OSError):  # no pidfd here: poll
        while _alive(pid):
            time.sleep(1.0)
    else:
        select.select([fd], [], [])  # readable once the process has exited
    os._exit(0)  # not sys.exit: a thread cannot end the process otherwise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
