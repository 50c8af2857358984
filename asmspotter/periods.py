"""Periods: the time windows whose imagery is reduced to one composite each.

A period is written in the catalogue and on the command line as a year (``2019``), a
quarter (``2020-Q3``), a month (``2020-07``), a date range (``2020-07-01/2020-09-30``) or a
mapping ``{id, start, end}`` (:meth:`Period.parse`). :mod:`asmspotter.catalogue` gives each
region its periods.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Period:
    """A time window whose imagery is reduced to one composite.

    Attributes:
        id: short name used on the command line and in file names (``2019``, ``2020-Q3``).
        start: first day, inclusive.
        end: last day, inclusive.

    """

    id: str
    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if not self.id or not re.fullmatch(r"[A-Za-z0-9_.-]+", self.id):
            raise ValueError(f"period id {self.id!r} must be letters, digits, '-', '_' or '.'")
        if self.end < self.start:
            raise ValueError(f"period {self.id!r}: end {self.end} is before start {self.start}")

    @property
    def mid(self) -> dt.date:
        """The middle day of the period (used to measure time between periods)."""
        return self.start + (self.end - self.start) // 2

    @property
    def days(self) -> int:
        """Length of the period in days, both ends included."""
        return (self.end - self.start).days + 1

    def datetime_range(self) -> str:
        """Return the period as a STAC ``datetime`` interval string."""
        return f"{self.start.isoformat()}T00:00:00Z/{self.end.isoformat()}T23:59:59Z"

    @classmethod
    def parse(cls, spec: Any) -> Period:
        """Build a period from a catalogue value.

        Accepted forms: a year (``2019``), a quarter (``"2020-Q3"``), a month
        (``"2020-07"``), a date range (``"2020-07-01/2020-09-30"``) or a mapping
        ``{id, start, end}``.

        Raises:
            ValueError: the value is none of these or its dates are out of order.

        """
        if isinstance(spec, Mapping):
            missing = {"start", "end"} - set(spec)
            if missing:
                raise ValueError(f"period {plain(spec)} lacks {', '.join(sorted(missing))}")
            start, end = parse_date(spec["start"]), parse_date(spec["end"])
            pid = str(spec.get("id") or f"{start.isoformat()}_{end.isoformat()}")
            return cls(pid, start, end)
        text = str(spec).strip()
        if re.fullmatch(r"\d{4}", text):
            year = int(text)
            return cls(text, dt.date(year, 1, 1), dt.date(year, 12, 31))
        m = re.fullmatch(r"(\d{4})-Q([1-4])", text, flags=re.IGNORECASE)
        if m:
            year, q = int(m.group(1)), int(m.group(2))
            start = dt.date(year, 3 * q - 2, 1)
            return cls(f"{year}-Q{q}", start, _month_end(year, 3 * q))
        m = re.fullmatch(r"(\d{4})-(\d{2})", text)
        if m:
            year, month = int(m.group(1)), int(m.group(2))
            if not 1 <= month <= 12:
                raise ValueError(f"period {text!r}: month {month} does not exist")
            return cls(text, dt.date(year, month, 1), _month_end(year, month))
        if "/" in text:
            a, b = text.split("/", 1)
            start, end = parse_date(a), parse_date(b)
            return cls(f"{start.isoformat()}_{end.isoformat()}", start, end)
        raise ValueError(
            f"period {text!r} is not a year, quarter (2020-Q3), month (2020-07), "
            "date range (2020-07-01/2020-09-30) or {id, start, end}"
        )


def _month_end(year: int, month: int) -> dt.date:
    first_next = dt.date(year + month // 12, month % 12 + 1, 1)
    return first_next - dt.timedelta(days=1)


def parse_date(value: Any) -> dt.date:
    """Return a date from a catalogue value (a date, a datetime or ``YYYY-MM-DD``).

    Raises:
        ValueError: the value is not a date.

    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise ValueError(f"{plain(value)!r} is not a date (YYYY-MM-DD)") from exc


def plain(value: Any) -> str:
    """Write a catalogue value as the catalogue would, for messages.

    Dates are ISO dates and mappings ``{key: value, ...}``, never Python's ``repr``
    (``datetime.date(2020, 7, 1)``).
    """
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{plain(k)}: {plain(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(plain(v) for v in value) + "]"
    return str(value)
