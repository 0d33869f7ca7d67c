"""Checks of the values users give: ids, counts, numbers, times and the paths built from them.

Ids of sessions, sweeps and reports become file and folder names and reach SQL, so every entry
(the command line, :func:`~workbench.runs.run`, :func:`~workbench.runs.sweep`,
:func:`~workbench.runs.halt_sweep`, :func:`~workbench.report.report`) checks them here before it
creates anything. Each check returns the value or raises :class:`ConfigError` with a one-line
message; :func:`command_line` turns one into an ``argparse`` type.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from workbench.errors import ConfigError

T = TypeVar("T")
ID_RULE = "1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit, without '..'"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # no '/', no '=' (DuckDB reads k=v folders as partitions)


def check_id(value: Any, what: str = "id") -> str:
    """``value`` if it is a safe id (see :data:`ID_RULE`), else :class:`ConfigError`."""
    if isinstance(value, str) and _ID.fullmatch(value) and ".." not in value:
        return value
    raise ConfigError(f"{_subject(what)}must be {ID_RULE}; got {_shown(value)}.")


def inside(folder: str | Path, *parts: str) -> Path:
    """``folder/parts`` resolved (symbolic links followed); :class:`ConfigError` if it lies outside ``folder``."""
    root = Path(folder).resolve()
    path = root.joinpath(*parts).resolve()
    if path == root or not path.is_relative_to(root):
        raise ConfigError(f"{Path(folder).joinpath(*parts)} lies outside {folder}: use an id of {ID_RULE}.")
    return path


def positive_int(value: Any, what: str = "") -> int:
    """``value`` if it is a whole number above 0 (not a bool)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ConfigError(f"{_subject(what)}must be a whole number above 0; got {_shown(value)}.")


def positive_number(value: Any, what: str = "") -> float:
    """``value`` as a float if it is a finite number above 0 (not a bool)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    raise ConfigError(f"{_subject(what)}must be a finite number above 0; got {_shown(value)}.")


def timestamp(value: Any, what: str = "") -> str:
    """``value`` if it is a string pandas reads as a time; a date or datetime as an ISO string."""
    import pandas as pd

    if isinstance(value, str | date):
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            stamp = pd.NaT
        if stamp is not pd.NaT:
            return value if isinstance(value, str) else stamp.isoformat()
    raise ConfigError(f"{_subject(what)}must be a date or time, e.g. 2024-01-02T12:00; got {_shown(value)}.")


def command_line(check: Callable[[Any, str], T], parse: Callable[[str], Any] = str) -> Callable[[str], T]:
    """An ``argparse`` type: ``parse`` the text (``int``, ``float``, ...), then ``check`` it."""

    def convert(text: str) -> T:
        try:
            return check(parse(text), "")
        except (ConfigError, ValueError) as e:
            message = str(e) if isinstance(e, ConfigError) else f"must be {_KINDS[parse]}; got {_shown(text)}"
            raise argparse.ArgumentTypeError(message.rstrip(".")) from None

    convert.__name__ = check.__name__
    return convert


_KINDS: dict[Callable[[str], Any], str] = {int: "a whole number above 0", float: "a finite number above 0"}


def _subject(what: str) -> str:
    return f"{what} " if what else ""


def _shown(value: Any) -> str:
    """``value``'s repr, cut short: a 300-character id does not fill the terminal."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:32]}... ({len(text)} characters)"
