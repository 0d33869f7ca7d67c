"""The kill switch: once tripped it blocks new orders in every mode until cleared explicitly.

Its state is recorded in the store (so a restarted session stays halted) and mirrored in a flag
file beside the store, ``<store>.halt``, through which another process (the CLI, a panel, a sweep's
controller) trips every session that uses that store: a trip writes the flag, and every session
watches the flags of its account (a run watches the main store's and its sweep's too).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from workbench.errors import KillSwitchActive
from workbench.store import Store

TripListener = Callable[[str], None]

POLL = 0.25  # seconds between looks at the flag files (a trip in this process is seen at once)
_trips = 0  # flags tripped by this process: a switch looks at its files again when it grows


def flag_path(store_path: str | Path) -> Path:
    return Path(f"{store_path}.halt")


def trip_flag(store_path: str | Path, reason: str, source: str) -> Path:
    """Trip the kill switch of every session on ``store_path`` from another process."""
    global _trips
    path = flag_path(store_path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"reason": reason, "source": source, "at": datetime.now(UTC).isoformat()}))
    tmp.replace(path)
    _trips += 1
    return path


class KillSwitch:
    """The kill switch of one store. ``tripped`` is true while the store or the flag file says so.

    The flag files are read at most every :data:`POLL` seconds (an order path asks per order), and
    at once after any flag was written by this process: a trip here refuses the very next order,
    one from another process every order from ``POLL`` seconds after it."""

    def __init__(self, store: Store, *, flags: tuple[str | Path, ...] = ()) -> None:
        """``flags``: more flag files that trip this switch, e.g. the one a sweep shares."""
        self.store = store
        self.flag = flag_path(store.path)
        self.flags = (self.flag, *(Path(f) for f in flags))
        self._tripped, self.reason = store.kill_switch_state()
        self._looked: tuple[float, int] | None = None  # when the flags were last read, and _trips then
        self._listeners: list[TripListener] = []

    def on_trip(self, listener: TripListener) -> None:
        """Call ``listener(reason)`` when the switch trips (sessions cancel their orders)."""
        self._listeners.append(listener)

    @property
    def tripped(self) -> bool:
        if self._tripped:
            return True
        now = time.monotonic()
        if self._looked is not None and self._looked[1] == _trips and now < self._looked[0] + POLL:
            return False
        self._looked = (now, _trips)
        for flag in self.flags:
            try:
                detail = json.loads(flag.read_text() or "{}")
            except FileNotFoundError:
                continue
            else:
                self._halt(detail.get("reason", "tripped from another process"), detail.get("source", "flag file"))
                break
        return self._tripped

    def trip(self, reason: str, source: str = "code") -> None:
        """Halt: write this store's flag (so every process on the store halts too), persist the
        state, then tell every listener."""
        trip_flag(self.store.path, reason, source)
        self._halt(reason, source)

    def _halt(self, reason: str, source: str) -> None:
        self._tripped, self.reason = True, reason
        self.store.set_kill_switch(True, reason, source)
        self.store.audit("kill_switch.trip", {"reason": reason, "source": source})
        for listener in self._listeners:
            listener(reason)

    def clear(self, by: str) -> None:
        """Allow orders again; ``by`` says who cleared it, for the audit log."""
        self.flag.unlink(missing_ok=True)
        self._tripped, self.reason, self._looked = False, "", None
        self.store.set_kill_switch(False, f"cleared by {by}", by)
        self.store.audit("kill_switch.clear", {"by": by})

    def check(self) -> None:
        """Raise :class:`KillSwitchActive` if tripped."""
        if self.tripped:
            raise KillSwitchActive(
                f"The kill switch is tripped ({self.reason}): no new orders until it is cleared "
                "with `workbench kill-switch clear` or KillSwitch.clear().",
                rule="kill_switch",
            )
