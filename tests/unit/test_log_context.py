"""Log context: fields set once where a call or mailbox is handled reach every line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from crmcomms.logs import ContextFilter, JsonFormatter, TextFormatter, log_fields


@pytest.fixture
def json_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON lines through the daemon's filter and formatter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("crmcomms.test_log_context")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, out
    logger.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_fields_nest_replace_skip_none_and_end_with_the_block(
    json_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = json_lines
    with log_fields(mailbox="support"):
        with log_fields(linkedid="1700000000.1", message_id=None):
            logger.info("inner")
        with log_fields(mailbox="sales"):
            logger.info("replaced")
        logger.info("outer", extra={"mailbox": "explicit"})
    logger.info("after")
    inner, replaced, outer, after = lines(out)
    assert (inner["mailbox"], inner["linkedid"]) == ("support", "1700000000.1")
    assert "message_id" not in inner
    assert replaced["mailbox"] == "sales" and "linkedid" not in replaced
    assert outer["mailbox"] == "explicit"  # a field passed with extra= wins
    assert "mailbox" not in after and "linkedid" not in after


async def test_fields_follow_each_task_and_the_tasks_it_starts(
    json_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = json_lines
    both_started = asyncio.Barrier(2)

    async def worker(name: str) -> None:
        with log_fields(mailbox=name):
            await both_started.wait()  # the two tasks' blocks overlap in time
            logger.info("syncing %s", name)

            async def child() -> None:
                logger.info("child of %s", name)

            await asyncio.create_task(child())

    async with asyncio.TaskGroup() as group:
        group.create_task(worker("support"))
        group.create_task(worker("sales"))
    logger.info("outside")
    seen = {(line["msg"], line.get("mailbox")) for line in lines(out)}
    assert seen == {
        ("syncing support", "support"),
        ("child of support", "support"),
        ("syncing sales", "sales"),
        ("child of sales", "sales"),
        ("outside", None),
    }


def test_filter_stamps_records_for_any_handler(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.INFO), log_fields(linkedid="1700000000.7"):
        logging.getLogger("crmcomms.elsewhere").info("a line from another module")
    assert caplog.records[-1].linkedid == "1700000000.7"  # type: ignore[attr-defined]


def test_text_form_appends_the_fields_before_a_traceback() -> None:
    formatter = TextFormatter("%(levelname)s %(name)s: %(message)s")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = sys.exc_info()
    with log_fields(linkedid="1700000000.1", mailbox="support"):
        text = formatter.format(record)
    first, *rest = text.splitlines()
    assert first == "ERROR x: failed [linkedid=1700000000.1 mailbox=support]"
    assert rest[-1] == "RuntimeError: boom"
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "plain", (), None)
    assert formatter.format(plain) == "INFO x: plain"


def test_a_field_may_not_overwrite_the_record() -> None:
    with pytest.raises(ValueError, match="msg"), log_fields(msg="x"):
        pass
