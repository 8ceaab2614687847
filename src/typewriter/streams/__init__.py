"""Streams: append-only event logs, and the brokers that hold them."""

from __future__ import annotations

from typewriter.streams.base import Broker, Entry, StreamInfo, Subscription
from typewriter.streams.factory import create_broker

__all__ = ["Broker", "Entry", "StreamInfo", "Subscription", "create_broker"]
