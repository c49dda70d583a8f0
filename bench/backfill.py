"""CDR backfill throughput: rows read and turned into calls per second.

A cdr_custom file (the standard columns, as Asterisk writes it) is made from
the outage fixtures' real rows, repeated with fresh linkedids and times one
minute apart, then read the way the daemon reads it after a reconnect: the
window of the last ``--window`` minutes (the rows before it are skipped as
text), every call of the window derived from its rows and merged with nothing
logged. Prints rows/s for the file read and for the whole backfill.

    .venv/bin/python bench/backfill.py [--calls 100000] [--window 60]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crmcomms.cdr.backfill import calls_from_cdr
from crmcomms.cdr.source import CsvCdrSource
from crmcomms.telephony.agents import agent_matcher
from crmcomms.telephony.reconcile import merge

FIXTURES = Path(__file__).parents[1] / "tests" / "fixtures" / "outages"
START, ANSWER, END, UNIQUEID, LINKEDID = 9, 10, 11, 17, 18
TIME = "%Y-%m-%d %H:%M:%S"


def fixture_calls() -> list[list[list[str]]]:
    """The fixtures' rows grouped by call (one list of rows per linkedid)."""
    calls: dict[str, list[list[str]]] = {}
    for path in sorted(FIXTURES.glob("*/cdr-custom.csv")):
        with path.open(newline="") as file:
            for fields in csv.reader(file):
                calls.setdefault(fields[LINKEDID], []).append(fields)
    return list(calls.values())


def shifted(value: str, by: timedelta) -> str:
    if not value:
        return value
    return (datetime.strptime(value, TIME) + by).strftime(TIME)


def write_file(path: Path, calls: int) -> datetime:
    """``calls`` calls, one a minute from 2026-01-01; returns the newest start."""
    templates = fixture_calls()
    base = datetime(2026, 1, 1)
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for n in range(calls):
        rows = templates[n % len(templates)]
        first = min(datetime.strptime(r[START], TIME) for r in rows)
        by = base + timedelta(minutes=n) - first
        for fields in rows:
            row = list(fields)
            for i in (START, ANSWER, END):
                row[i] = shifted(row[i], by)
            row[LINKEDID] = f"{1_800_000_000 + n}.{n}"
            row[UNIQUEID] = f"{row[LINKEDID]}-{row[UNIQUEID]}"
            writer.writerow(row)
    path.write_text(out.getvalue())
    return (base + timedelta(minutes=calls - 1)).replace(tzinfo=UTC)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000, help="calls in the file")
    parser.add_argument("--window", type=int, default=60, help="minutes of outage to backfill")
    args = parser.parse_args()
    agent_of = agent_matcher()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Master.csv"
        newest = write_file(path, args.calls)
        size = path.stat().st_size
        source = CsvCdrSource(path)
        since = newest - timedelta(minutes=args.window)
        for label, window_since in (
            ("window", since),
            ("whole file", newest - timedelta(days=3650)),
        ):
            started = time.perf_counter()
            rows = await source.rows(window_since, None)
            read = time.perf_counter() - started
            calls = calls_from_cdr(rows, agent_of)
            merged = [merge(None, call) for call in calls]
            total = time.perf_counter() - started
            print(
                f"{label:10}: {size / 1e6:.1f} MB, {len(rows):7d} rows of {len(calls):6d} calls"
                f" read in {read * 1000:7.1f} ms, backfilled in {total * 1000:7.1f} ms"
                f" ({len(rows) / total:,.0f} rows/s, {len(merged) / total:,.0f} calls/s)"
            )


if __name__ == "__main__":
    asyncio.run(main())
