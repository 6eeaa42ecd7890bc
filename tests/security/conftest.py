"""What the hostile-request tests share: the real app under uvicorn on a free loopback port, one clinic enrolled."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.web.app import create_app
from tests.conftest import RecordingDoorbell, enrol_clinic
from tests.patient_web.live_server import LiveServer


@pytest.fixture
async def live(settings: Settings, broker: BrokerContext) -> Iterator[LiveServer]:
    await enrol_clinic(broker, "klinikk-a")
    app = create_app(msgspec.structs.replace(settings, submit_rate=0), doorbell_factory=lambda s: RecordingDoorbell())
    server = LiveServer(app).start()
    try:
        yield server
    finally:
        server.stop()
