"""Waiting for a condition instead of sleeping: one helper for the async tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


async def until(predicate: Callable[[], T], what: str, timeout_s: float = 20.0, poll_s: float = 0.05) -> T:
    """Poll `predicate` until it returns something true, and return that; fail the test naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(poll_s)
    return value
