"""Reaching the process's BrokerContext and submission counter from a handler.

`APP_DEPENDENCIES` is registered once on the app (`create_app`); a handler names what it needs.
What belongs to one audience stays with that audience's router: the signing clinic (`clinic_api`)
and the signed-in operator (`ops`).
"""

from __future__ import annotations

from litestar.datastructures import State
from litestar.di import Provide

from referral_broker.services.context import BrokerContext
from referral_broker.services.submit_limit import WindowCounter


def provide_broker(state: State) -> BrokerContext:
    broker: BrokerContext = state.broker
    return broker


def provide_submit_counter(state: State) -> WindowCounter:
    counter: WindowCounter = state.submit_counter
    return counter


APP_DEPENDENCIES = {
    "broker": Provide(provide_broker, sync_to_thread=False),
    "submit_counter": Provide(provide_submit_counter, sync_to_thread=False),
}
