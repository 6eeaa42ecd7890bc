"""Reaching the process's BrokerContext from a handler."""

from __future__ import annotations

from litestar.datastructures import State

from referral_broker.services.context import BrokerContext


def provide_broker(state: State) -> BrokerContext:
    broker: BrokerContext = state.broker
    return broker
