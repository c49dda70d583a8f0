"""Fixtures shared by the integration tests: a private Dovecot, the daemon's services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from crmcomms.app import build_services
from crmcomms.config import Settings
from crmcomms.services import Services
from tests.mail_servers import DovecotServer, run_dovecot


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    """A private Dovecot on a free loopback port, for one test."""
    with run_dovecot() as server:
        yield server


@pytest.fixture
async def svc(migrated: Settings) -> AsyncIterator[Services]:
    """The daemon's services on a migrated database."""
    services = build_services(migrated)
    yield services
    await services.engine.dispose()
