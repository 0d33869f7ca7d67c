"""Waiting for a condition without sleeping blindly: poll it, with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def holds_within(condition: Callable[[], Any], timeout: float, every: float = 0.02) -> bool:
    """Poll ``condition`` (sync or async) until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every)


async def until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds, or fail the test after ``timeout`` seconds."""
    if not await holds_within(condition, timeout):
        raise AssertionError(f"{what} did not happen within {timeout}s")
