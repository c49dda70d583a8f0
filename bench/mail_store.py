"""Storing fetched mail: ``core.mail.store.store_messages`` on SQLite, batches of 500.

    .venv/bin/python bench/mail_store.py [--messages 5000] [--rounds 3]

The messages of ``bench/imap.py`` (headers only, as the sync's first phase
stores them) into a fresh SQLite file in WAL mode, one transaction per batch;
prints the best of ``--rounds`` runs. No IMAP, no parsing in the timing.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core.mail.models  # noqa: F401  (the mail tables)
from bench.imap import realistic
from core.mail import MailHeaders, parse_headers
from core.mail.blobs import BlobStore
from core.mail.store import Copy, Fetched, StoreOptions, store_messages
from core.models import Base


def run(raws: list[bytes], headers: list[MailHeaders]) -> float:
    """Seconds to store every message into a new database."""
    work = Path(tempfile.mkdtemp(prefix="crmcomms-bench-"))
    engine = create_engine(f"sqlite:///{work}/bench.sqlite3")
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    Base.metadata.create_all(engine)
    blobs = BlobStore(work / "blobs")
    start = time.perf_counter()
    for first in range(0, len(raws), 500):
        batch = [
            Fetched(Copy("bench", "INBOX", 1, n + 1), raws[n], headers[n])
            for n in range(first, min(first + 500, len(raws)))
        ]
        with engine.begin() as conn, Session(bind=conn) as session:
            store_messages(session, batch, blobs, StoreOptions(), unlocated=True)
            session.flush()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(4)
    raws = [realistic(i, rng) for i in range(args.messages)]
    headers = [parse_headers(raw) for raw in raws]
    best = min(run(raws, headers) for _ in range(args.rounds))
    print(f"{args.messages} messages stored in {best:.2f} s ({args.messages / best:.0f} msg/s)")


if __name__ == "__main__":
    main()
