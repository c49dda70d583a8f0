"""Caller lookup benchmark: lookups/s and p50/p99 latency at a million contacts.

    python bench/lookup.py [--contacts 1000000] [--lookups 2000] [--postgres URL]

Builds N contacts with German landline and mobile numbers (several area codes)
and foreign ones (UK, FR, US, AT, CH) in a temporary SQLite database (schema by
``core.migrate.upgrade``, rows inserted in batches in one transaction), then
times ``core.lookup.lookup_contacts`` (the HTTP API's lookup, one session each)
and ``core.lookup.find_contacts`` in ``DbWorker.read`` (the screen pop's) for
three kinds of caller (and ``core.search.search_contacts`` for a few kinds of search):

- exact: a stored number, presented as E.164;
- suffix: a foreign number stored in its national format under region DE
  (``020 7946 0958``), so only the last digits match;
- miss: a number nobody has.

With ``--postgres URL`` (an empty database, e.g.
``postgresql+asyncpg://user@host/db``) the same runs against PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import SessionFactory, create_engine, session_factory
from core.dbthread import DbWorker
from core.lookup import find_contacts, lookup_contacts
from core.migrate import upgrade
from core.models import Contact, EmailAddress, Organization, PhoneNumber
from core.phones import normalise
from core.search import search_contacts, search_key

REGION = "DE"
BATCH = 20_000
FIRST = [
    "Anna",
    "Jonas",
    "Lena",
    "Lukas",
    "Marie",
    "Paul",
    "Sophie",
    "Felix",
    "Emma",
    "Ben",
    "Mia",
    "Leon",
    "Hannah",
    "Noah",
    "Lea",
    "Elias",
    "Claire",
    "James",
    "Olivia",
    "Luca",
]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
        "Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Dubois", "Smith", "Brown",
        "Gruber", "Huber", "Rossi", "Keller", "Neumann", "Schwarz", "Zimmermann"]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Phone:
    """A generated number: its true E.164, how it is stored, and whether that is odd."""

    e164: str
    raw: str
    odd: bool


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(2, 9)) + "".join(rng.choice("0123456789") for _ in range(n - 1))


def _german(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.45:
        prefix = rng.choice(["151", "152", "157", "160", "162", "170", "171", "172", "176", "179"])
        sub = _digits(rng, 8 if prefix in ("151", "152", "157") else 7)
    else:
        prefix, size = rng.choice([("30", 8), ("40", 7), ("89", 8), ("69", 7), ("221", 7),
                                   ("211", 7), ("711", 6), ("341", 7), ("511", 6), ("6131", 6),
                                   ("7071", 5), ("3741", 6), ("8821", 5), ("421", 7)])  # fmt: skip
        sub = _digits(rng, size)
    raw = rng.choice(["0{p} {s}", "+49 {p} {s}", "0{p}/{s}", "(0{p}) {s}", "+49 (0){p} {s}"])
    return f"+49{prefix}{sub}", raw.format(p=prefix, s=sub)


def _foreign(rng: random.Random) -> tuple[str, str]:
    """A foreign number: its E.164 and its national format (as a local would write it)."""
    plans: list[tuple[str, Callable[[], str]]] = [
        ("44", lambda: "20" + rng.choice("378") + _digits(rng, 7)),
        ("44", lambda: "79" + _digits(rng, 8)),
        ("33", lambda: rng.choice("1234") + _digits(rng, 8)),
        ("33", lambda: "6" + rng.choice("0125") + _digits(rng, 7)),
        ("1", lambda: rng.choice(["212", "415", "617", "312", "206"]) + _us_local(rng)),
        ("43", lambda: "1" + _digits(rng, 7)),
        ("43", lambda: "664" + _digits(rng, 7)),
        ("41", lambda: rng.choice(["44", "43", "31", "61"]) + _digits(rng, 7)),
        ("41", lambda: rng.choice(["79", "78", "76"]) + _digits(rng, 7)),
    ]
    cc, nsn = rng.choice(plans)
    number = nsn()
    national = number if cc == "1" else "0" + number
    return f"+{cc}{number}", national


def _us_local(rng: random.Random) -> str:
    return str(rng.randint(201, 989)).replace("11", "21") + "".join(
        rng.choice("0123456789") for _ in range(4)
    )


def generate_phone(rng: random.Random) -> Phone:
    """A realistic number: 70 % German, 30 % foreign; 1 in 10 foreign stored nationally."""
    if rng.random() < 0.7:
        return Phone(*_german(rng), odd=False)
    e164, national = _foreign(rng)
    if rng.random() < 0.1:
        return Phone(e164, national, odd=True)
    return Phone(e164, rng.choice(["+", "00"]) + e164[1:], odd=False)


def phone_row(phone: Phone, phone_id: int, contact_id: int) -> dict[str, Any]:
    """The phone_numbers row the application would store (odd ones through ``normalise``)."""
    if phone.odd:
        n = normalise(phone.raw, REGION)
        assert n is not None
        e164, rev = n.e164, n.digits[::-1]
    else:
        e164, rev = phone.e164, phone.e164[:0:-1]
    return {"id": phone_id, "contact_id": contact_id, "label": "work", "raw": phone.raw,
            "e164": e164, "rev_digits": rev}  # fmt: skip


@dataclass
class Built:
    """What the build produced: stored E.164s and the odd numbers for suffix lookups."""

    stored: list[str]
    odd: list[str]
    seconds: float = 0.0


def contact_batches(n: int, rng: random.Random, built: Built) -> Iterator[dict[str, list[Any]]]:
    """Rows for ``n`` contacts, in batches of :data:`BATCH`, per table."""
    now = datetime.now(UTC)
    phone_id = 0
    for start in range(1, n + 1, BATCH):
        rows: dict[str, list[Any]] = {"contacts": [], "phones": [], "emails": []}
        for cid in range(start, min(start + BATCH, n + 1)):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            org = rng.randint(1, n // 20 + 1) if rng.random() < 0.3 else None
            key = search_key([f"{first} {last}", first, last, f"Firma {org} GmbH" if org else None])
            rows["contacts"].append({"id": cid, "first_name": first, "last_name": last,
                "display_name": f"{first} {last}", "organization_id": org, "search_key": key,
                "created_at": now, "updated_at": now})  # fmt: skip
            rows["emails"].append({"id": cid, "contact_id": cid, "label": "",
                "address": f"{first}.{last}.{cid}@example.de".lower()})  # fmt: skip
            for _ in range(1 if rng.random() < 0.6 else 2):
                phone_id += 1
                phone = generate_phone(rng)
                rows["phones"].append(phone_row(phone, phone_id, cid))
                (built.odd if phone.odd else built.stored).append(phone.e164)
        yield rows


async def build(engine: AsyncEngine, n: int, rng: random.Random) -> Built:
    """Create the schema and insert ``n`` contacts in one transaction."""
    await upgrade(engine)
    built = Built([], [])
    started = time.perf_counter()
    async with engine.begin() as conn:
        if await conn.scalar(select(func.count()).select_from(Contact)):
            sys.exit("the database is not empty")
        now = datetime.now(UTC)
        orgs = [
            {"id": i, "name": f"Firma {i} GmbH", "created_at": now} for i in range(1, n // 20 + 2)
        ]
        await conn.execute(insert(Organization), orgs)
        for rows in contact_batches(n, rng, built):
            await conn.execute(insert(Contact), rows["contacts"])
            await conn.execute(insert(PhoneNumber), rows["phones"])
            await conn.execute(insert(EmailAddress), rows["emails"])
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:  # fresh statistics, as autovacuum would soon have
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                text("ANALYZE")
            )
    built.seconds = time.perf_counter() - started
    return built


def check_generator(rng: random.Random, samples: int = 5000) -> None:
    """Make sure generated numbers normalise as the application would store them."""
    for _ in range(samples):
        phone = generate_phone(rng)
        n = normalise(phone.raw, REGION)
        assert n is not None, phone
        if phone.odd:
            assert n.e164 != phone.e164, phone
        else:
            assert n.e164 == phone.e164, (phone, n)


@dataclass
class Timings:
    """Per lookup: the ``lookup_contacts`` call, and the whole session around it."""

    call: list[float]
    session: list[float]
    kinds: dict[str, int]


async def time_lookups(factory: SessionFactory, numbers: list[str], suffix_digits: int) -> Timings:
    """Time one lookup per number, each in its own session (as a screen pop does)."""
    timings = Timings([], [], {})
    for number in numbers:
        opened = time.perf_counter()
        async with factory() as session:
            await session.connection()  # pool checkout, outside the call's timing
            started = time.perf_counter()
            result = await lookup_contacts(session, number, REGION, suffix_digits)
            timings.call.append(time.perf_counter() - started)
        timings.session.append(time.perf_counter() - opened)
        timings.kinds[result.match_kind] = timings.kinds.get(result.match_kind, 0) + 1
    return timings


async def time_pop_path(worker: DbWorker, numbers: list[str], suffix_digits: int) -> list[float]:
    """The lookup as a screen pop does it: ``find_contacts`` in one ``DbWorker.read``
    (SQLite: synchronously on the loop's thread; PostgreSQL: run_sync)."""
    latencies: list[float] = []
    for number in numbers:
        started = time.perf_counter()
        await worker.read(lambda conn, n=number: find_contacts(conn, n, REGION, suffix_digits))
        latencies.append(time.perf_counter() - started)
    return latencies


async def time_searches(factory: SessionFactory, queries: list[str]) -> list[float]:
    """Time ``core.search.search_contacts`` (first page of 50) for each query."""
    latencies: list[float] = []
    for q in queries:
        async with factory() as session:
            started = time.perf_counter()
            await search_contacts(session, q, REGION, limit=50)
            latencies.append(time.perf_counter() - started)
    return latencies


def search_queries(rng: random.Random, stored: list[str], count: int) -> dict[str, list[str]]:
    """Contact searches: a name (with and without umlaut), a rare company, part of a number."""
    middle = [e164[5:12] for e164 in rng.sample(stored, count)]
    return {
        "name 'müller'": ["müller"] * count,
        "name 'mueller'": ["mueller"] * count,
        "company": [f"Firma {rng.randint(1, 40_000)} GmbH" for _ in range(count)],
        "7 digits": middle,
        "'0171 555'": ["0171 555"] * count,
    }


def report(label: str, timings: Timings) -> None:
    """Print lookups/s and p50/p99 for one kind of caller."""
    call = statistics.quantiles(timings.call, n=100)
    whole = statistics.quantiles(timings.session, n=100)
    print(
        f"  {label:<6} {len(timings.call) / sum(timings.session):6.0f} lookups/s | call "
        f"p50 {call[49] * 1e3:.3f} ms p99 {call[98] * 1e3:.3f} ms | with session "
        f"p50 {whole[49] * 1e3:.3f} ms p99 {whole[98] * 1e3:.3f} ms | {timings.kinds}"
    )


def miss_numbers(rng: random.Random, stored: set[str], count: int) -> list[str]:
    """Numbers nobody has (German and foreign)."""
    misses: list[str] = []
    while len(misses) < count:
        e164 = generate_phone(rng).e164
        if e164 not in stored:
            misses.append(e164)
    return misses


async def run(url: str, args: argparse.Namespace) -> None:
    """Build, warm up, and time the three kinds of lookup against ``url``."""
    rng = random.Random(args.seed)
    check_generator(random.Random(args.seed + 1))
    engine = create_engine(url)
    worker = DbWorker(engine)
    try:
        built = await build(engine, args.contacts, rng)
        total = len(built.stored) + len(built.odd)
        print(f"{url.split(':')[0]}: built {args.contacts:,} contacts ({total:,} numbers)")
        print(f"  build {built.seconds:.1f} s")
        factory = session_factory(engine)
        stored = sorted(set(built.stored))
        kinds: dict[str, Callable[[], list[str]]] = {
            "exact": lambda: rng.sample(stored, args.lookups),
            "suffix": lambda: rng.sample(built.odd, min(args.lookups, len(built.odd))),
            "miss": lambda: miss_numbers(rng, set(stored), args.lookups),
        }
        await time_lookups(factory, rng.sample(stored, 500), args.suffix_digits)  # warm-up
        for label, numbers in kinds.items():
            sample = numbers()
            report(label, await time_lookups(factory, sample, args.suffix_digits))
            cuts = statistics.quantiles(
                await time_pop_path(worker, sample, args.suffix_digits), n=100
            )
            print(f"         screen-pop path (DbWorker.read): p50 {cuts[49] * 1e3:.3f} ms "
                  f"p99 {cuts[98] * 1e3:.3f} ms")  # fmt: skip
        for label, queries in search_queries(rng, stored, args.searches).items():
            times = sorted(await time_searches(factory, queries))
            print(f"  search {label:<15} p50 {statistics.median(times) * 1e3:.1f} ms "
                  f"max {times[-1] * 1e3:.1f} ms")  # fmt: skip
    finally:
        await worker.close()
        await engine.dispose()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000, help="per kind")
    parser.add_argument("--suffix-digits", type=int, default=8)
    parser.add_argument("--searches", type=int, default=10, help="contact searches per kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", metavar="URL", help="also run against this empty database")
    parser.add_argument("--keep", metavar="FILE", type=Path, help="build the SQLite file here")
    parser.add_argument("--no-sqlite", action="store_true", help="only run against --postgres")
    args = parser.parse_args()
    if not args.no_sqlite:
        run_sqlite(args)
    if args.postgres:
        asyncio.run(run(args.postgres, args))


def run_sqlite(args: argparse.Namespace) -> None:
    """The SQLite run, in a temporary file unless ``--keep`` names one."""
    with tempfile.TemporaryDirectory() as tmp:
        db = args.keep or Path(tmp) / "bench.sqlite3"
        asyncio.run(run(f"sqlite+aiosqlite:///{db}", args))
        print(f"  database file {db.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
