"""Contact search benchmark: ``core.search.search_contacts`` at a million contacts.

    python bench/search.py --postgres URL [--contacts 1000000] [--searches 10] [--no-sqlite]

Builds the contacts of bench/lookup.py (names, companies, e-mail addresses, German
and foreign numbers) and times the first page (50) of the searches of that
benchmark (a name with and without umlaut, a company, 7 digits from the middle of
a number, ``0171 555``). On PostgreSQL it times them with the ``pg_trgm`` indexes of
migration 0008 (after) and again with them dropped (before: scans). SQLite has no
such index: the same searches scan.
"""

from __future__ import annotations

import random
import statistics

from lookup import build, search_queries, time_searches
from seed import database_options, on_databases
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import create_engine, session_factory

TRIGRAM = (
    "ix_contacts_search_key_trgm",
    "ix_phone_numbers_rev_digits_trgm",
    "ix_email_addresses_address_trgm",
)


async def time_all(engine: AsyncEngine, queries: dict[str, list[str]], label: str) -> None:
    factory = session_factory(engine)
    await time_searches(factory, [q[0] for q in queries.values()])  # warm-up
    for kind, sample in queries.items():
        times = sorted(await time_searches(factory, sample))
        print(
            f"  {label:<18} {kind:<15} p50 {statistics.median(times) * 1e3:8.1f} ms"
            f"  max {times[-1] * 1e3:8.1f} ms"
        )


async def run(url: str, contacts: int, searches: int) -> None:
    engine = create_engine(url)
    try:
        rng = random.Random(1)
        built = await build(engine, contacts, rng)
        print(f"{engine.dialect.name}: {contacts:,} contacts built in {built.seconds:.1f} s")
        queries = search_queries(rng, sorted(set(built.stored)), searches)
        if engine.dialect.name != "postgresql":
            await time_all(engine, queries, "scan (no index)")
            return
        await time_all(engine, queries, "pg_trgm (after)")
        async with engine.begin() as conn:
            for name in TRIGRAM:
                await conn.execute(text(f"DROP INDEX {name}"))
        await time_all(engine, queries, "no index (before)")
    finally:
        await engine.dispose()


def main() -> None:
    parser = database_options(__doc__ or "")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--searches", type=int, default=10)
    args = parser.parse_args()
    on_databases(args, lambda url: run(url, args.contacts, args.searches))


if __name__ == "__main__":
    main()
