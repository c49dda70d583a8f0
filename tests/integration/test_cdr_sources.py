"""CDR sources against the real things: the files as Asterisk wrote them, a real
PostgreSQL and a real MariaDB holding the same rows in Asterisk's ``cdr`` table
(and FreePBX's ``calldate`` variant), read through the same protocol."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from crmcomms.cdr.backfill import calls_from_cdr
from crmcomms.cdr.rows import COLUMNS, CdrRow, row_from_fields
from crmcomms.cdr.source import CdrSource, CsvCdrSource, open_source
from crmcomms.cdr.sql import SqlCdrSource
from crmcomms.config import CdrSettings
from crmcomms.telephony.agents import agent_matcher
from tests.conftest import FIXTURES, PG_BIN, PostgresServer, free_port
from tests.mariadb_server import MariaDbServer, mariadb

__all__ = ["mariadb"]  # the session fixture, used by name

CDR = FIXTURES / "outages"
SCENARIOS = sorted(path.name for path in CDR.iterdir() if path.is_dir())
agent_of = agent_matcher()

_TIMES = ("start", "answer", "end")
_INTS = ("duration", "billsec", "sequence")
_CREATE = """CREATE TABLE {table} (
    accountcode VARCHAR(80), src VARCHAR(80), dst VARCHAR(80), dcontext VARCHAR(80),
    clid VARCHAR(80), channel VARCHAR(80), dstchannel VARCHAR(80), lastapp VARCHAR(80),
    lastdata VARCHAR(80), start {ts}, answer {ts}, "end" {ts}, duration INTEGER,
    billsec INTEGER, disposition VARCHAR(45), amaflags VARCHAR(45), userfield VARCHAR(256),
    uniqueid VARCHAR(150), linkedid VARCHAR(150), peeraccount VARCHAR(80), sequence INTEGER
)"""
_FREEPBX = """CREATE TABLE cdr (
    calldate DATETIME NOT NULL DEFAULT '0000-00-00 00:00:00', clid VARCHAR(80),
    src VARCHAR(80), dst VARCHAR(80), dcontext VARCHAR(80), channel VARCHAR(80),
    dstchannel VARCHAR(80), lastapp VARCHAR(80), lastdata VARCHAR(80), duration INT(11),
    billsec INT(11), disposition VARCHAR(45), amaflags INT(11), accountcode VARCHAR(20),
    uniqueid VARCHAR(32), userfield VARCHAR(255), did VARCHAR(50), recordingfile VARCHAR(255),
    cnum VARCHAR(80), cnam VARCHAR(80), outbound_cnum VARCHAR(80), outbound_cnam VARCHAR(80),
    dst_cnam VARCHAR(80), linkedid VARCHAR(32), peeraccount VARCHAR(80), sequence INT(11),
    KEY calldate (calldate)
)"""


def all_fields() -> list[list[str]]:
    """Every scenario's cdr_custom lines, as one appended Master.csv would hold them."""
    lines: list[list[str]] = []
    for scenario in SCENARIOS:
        with (CDR / scenario / "cdr-custom.csv").open(newline="") as file:
            lines += list(csv.reader(file))
    return lines


def master_csv(tmp_path: Path) -> Path:
    path = tmp_path / "Master.csv"
    path.write_bytes(b"".join((CDR / s / "cdr-custom.csv").read_bytes() for s in SCENARIOS))
    return path


def sql_literal(value: str, column: str) -> str:
    if column in _INTS:
        return value
    if column in _TIMES and not value:
        return "NULL"
    return "'" + value.replace("'", "''") + "'"


def inserts(table: str, columns: tuple[str, ...] = COLUMNS, quote: str = '"') -> list[str]:
    names = ", ".join(f"{quote}{c}{quote}" for c in columns)
    return [
        f"INSERT INTO {table} ({names}) VALUES "
        f"({', '.join(sql_literal(v, c) for v, c in zip(fields, columns, strict=True))})"
        for fields in all_fields()
    ]


_FREEPBX_TEXT = (
    "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp", "lastdata",
    "disposition", "uniqueid", "linkedid", "accountcode",
)  # fmt: skip


def freepbx_inserts() -> list[str]:
    """The rows as FreePBX stores them: calldate = start, no answer/end."""
    names = ", ".join(("calldate", *_FREEPBX_TEXT, "duration", "billsec", "sequence", "amaflags"))
    out = []
    for fields in all_fields():
        row = dict(zip(COLUMNS, fields, strict=True))
        values = [
            f"'{row['start']}'",
            *(sql_literal(row[column], column) for column in _FREEPBX_TEXT),
            *(row[column] for column in _INTS),
            "3",
        ]
        out.append(f"INSERT INTO cdr ({names}) VALUES ({', '.join(values)})")
    return out


def key(row: CdrRow) -> tuple[Any, ...]:
    return (row.linkedid, row.uniqueid, row.sequence, row.start, row.answer, row.end)


# ------------------------------------------------------------------ the sources


def create_pg_cdr(postgres: PostgresServer) -> str:
    """A database with Asterisk's cdr table (timestamp without time zone) and the rows."""
    name = f"cdr_{uuid4().hex}"
    postgres.create_database(name)
    script = ";\n".join([_CREATE.format(table="cdr", ts="TIMESTAMP"), *inserts("cdr")]) + ";\n"
    subprocess.run(
        [
            PG_BIN / "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(postgres.port),
            "-U",
            "crm",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            name,
        ],
        input=script.encode(),
        check=True,
        capture_output=True,
    )
    return f"postgresql://crm@127.0.0.1:{postgres.port}/{name}"


def create_mariadb_cdr(server: MariaDbServer, freepbx: bool = False) -> str:
    name = f"cdr_{uuid4().hex[:16]}"
    server.execute(f"CREATE DATABASE {name}")
    if freepbx:
        server.execute(_FREEPBX, *freepbx_inserts(), database=name)
    else:
        create = _CREATE.format(table="cdr", ts="DATETIME").replace('"end"', "`end`")
        server.execute(create, *inserts("cdr", quote="`"), database=name)
    return server.url(name)


SOURCES = [
    "csv",
    pytest.param("postgres", marks=pytest.mark.postgres),
    "mariadb",
    "mariadb-freepbx",
]


@pytest.fixture(params=SOURCES)
async def source(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CdrSource]:
    """Every fixture row, in one of the places Asterisk writes CDR."""
    kind = request.param
    if kind == "csv":
        settings = CdrSettings(csv=str(master_csv(tmp_path)))
    elif kind == "postgres":
        settings = CdrSettings(url=create_pg_cdr(request.getfixturevalue("postgres")))
    else:
        server = request.getfixturevalue("mariadb")
        settings = CdrSettings(url=create_mariadb_cdr(server, freepbx=kind == "mariadb-freepbx"))
    opened = open_source(settings)
    assert opened is not None
    yield opened
    await opened.close()


DAY = datetime(2026, 12, 2, tzinfo=UTC)


def truth(scenario: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CDR / scenario / "truth.json").read_text())
    return loaded


def at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


# ------------------------------------------------------------------ every source


@pytest.fixture
def slack(request: pytest.FixtureRequest) -> timedelta:
    """How far a time read may be from the truth: 1 s (Asterisk truncates), 2 s where
    FreePBX's table makes answer and end sums of truncated numbers."""
    freepbx = request.node.callspec.params.get("source") == "mariadb-freepbx"
    return timedelta(seconds=2 if freepbx else 1)


def near(got: datetime | None, want: datetime | None, slack: timedelta) -> bool:
    if got is None or want is None:
        return got is want
    return abs(got - want) < slack


async def test_a_whole_day_reads_every_row_as_written(source: CdrSource, slack: timedelta) -> None:
    expected = sorted((row_from_fields(f) for f in all_fields()), key=key)
    got = sorted(await source.rows(DAY, None), key=key)
    assert [key(row)[:4] for row in got] == [key(row)[:4] for row in expected]
    for read, written in zip(got, expected, strict=True):
        assert near(read.answer, written.answer, slack), (read, written)
        assert near(read.end, written.end, slack), (read, written)
        assert (read.channel, read.dstchannel, read.disposition) == (
            written.channel,
            written.dstchannel,
            written.disposition,
        )
    assert await source.check() is None
    assert "newest row started 2026-12-02 03:00:52 UTC" in await source.summary()


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_each_outage_window_gives_its_calls(
    source: CdrSource, scenario: str, slack: timedelta
) -> None:
    """Read as the backfill does after the reconnect: from the disconnect (less the margin)."""
    facts = truth(scenario)
    lost = (facts["outage"] or {}).get("disconnect_t") or facts["calls"][0]["times"]["call_start"]
    since = at(lost) - timedelta(seconds=120)
    calls = {c.linkedid: c for c in calls_from_cdr(await source.rows(since, None), agent_of)}
    for true in facts["calls"]:
        call = calls[true["linkedid"]]
        assert call.agents_rung == tuple(true["agents_rung"])
        assert call.answered_by == true["answered_by"]
        assert call.status == ("missed" if true["missed"] else "answered")
        assert near(call.started_at, at(true["times"]["call_start"]), timedelta(seconds=1))
        assert near(call.ended_at, at(true["times"]["call_end"]), slack)
        if call.answered_at is not None:
            assert near(call.answered_at, at(true["times"]["agent_answered"]), slack)


async def test_a_window_brings_every_row_of_the_calls_it_touches(source: CdrSource) -> None:
    """From 02:59:40 on, the blonde transfer's first leg (ended 02:59:38) comes too."""
    since = datetime(2026, 12, 2, 2, 59, 40, tzinfo=UTC)
    until = datetime(2026, 12, 2, 2, 59, 41, tzinfo=UTC)
    rows = await source.rows(since, until)
    assert {row.linkedid for row in rows} == {"1796180375.14"}
    assert len(rows) == 5
    assert await source.rows(datetime(2026, 12, 3, tzinfo=UTC), None) == []


# ------------------------------------------------------------------ file specifics


async def test_the_cdr_csv_master_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    source = CsvCdrSource(CDR / "blonde-transfer" / "Master.csv")
    problem = await source.check()
    assert problem is not None and "18 fields a line, expected 21" in problem
    missing = CsvCdrSource(tmp_path / "nope.csv")
    assert "cannot read" in (await missing.check() or "")


async def test_a_bad_line_is_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = master_csv(tmp_path)
    good = path.read_text()
    path.write_text('"broken","line"\n' + good.replace("2026-12-02 02:57:40", "soon", 1))
    with caplog.at_level(logging.WARNING, logger="crmcomms.cdr.source"):
        rows = await CsvCdrSource(path).rows(DAY, None)
    assert len(rows) == len(all_fields()) - 1
    assert "line 1: CDR row skipped: 2 fields" in caplog.text
    assert "line 9: CDR row skipped: end: not a time: 'soon'" in caplog.text


# ------------------------------------------------------------------ SQL specifics


async def test_an_unreachable_server_or_missing_table_is_one_line(
    request: pytest.FixtureRequest,
) -> None:
    down = SqlCdrSource(f"postgresql://crm:secret@127.0.0.1:{free_port()}/asterisk")
    problem = await down.check()
    assert problem is not None and problem.startswith("cdr: postgresql://127.0.0.1:")
    assert "secret" not in problem
    await down.close()
    server: MariaDbServer = request.getfixturevalue("mariadb")
    url = create_mariadb_cdr(server)
    wrong = SqlCdrSource(url, "calls")
    problem = await wrong.check()
    assert problem is not None and "calls" in problem and "doesn't exist" in problem
    await wrong.close()


# ------------------------------------------------------------------ check-config


async def test_check_config_says_what_the_cdr_holds_or_what_backfill_would_add(
    tmp_path: Path,
) -> None:
    from crmcomms.checks import NO_CDR, check_cdr
    from tests.conftest import make_settings

    assert await check_cdr(make_settings(tmp_path)) == (None, NO_CDR)
    ok = make_settings(tmp_path, cdr={"csv": str(master_csv(tmp_path))})
    problem, info = await check_cdr(ok)
    assert problem is None
    assert info.endswith(
        "newest row started 2026-12-02 03:00:52 UTC, 13 row(s) in the day before it"
    )
    wrong = make_settings(tmp_path, cdr={"csv": str(CDR / "blonde-transfer" / "Master.csv")})
    problem, _ = await check_cdr(wrong)
    assert problem is not None and "expected 21" in problem
