"""Briefing languages: one template file per language, numbers and dates written per locale.

Every sentence, heading and label of a briefing comes from
``asmspotter/report/templates/<code>.yaml``; adding a language is adding such a file with the
same keys (a test checks that every language has every key of English). Numbers are
formatted with the file's decimal and group separators, so one set of numbers reads
``49,935`` in English and ``49.935`` in Spanish.

Example:
    >>> lang = load_language("es")
    >>> lang.area(49935.2), lang.factor(1.1096), lang.percent(0.0195)
    ('49.935', '1,11', '2,0 %')

"""

from __future__ import annotations

import datetime as dt
import functools
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from asmspotter.errors import InputError

#: Language whose texts every other language must match key for key.
BASE_LANGUAGE = "en"
#: Decimal places of expansion factors in sentences and tables.
FACTOR_DIGITS = 2
#: Decimal places of percentages.
PERCENT_DIGITS = 1


def _templates() -> Any:
    return resources.files("asmspotter.report").joinpath("templates")


def languages() -> tuple[str, ...]:
    """Return the codes of the languages that have a template file, sorted."""
    return tuple(
        sorted(
            entry.name.removesuffix(".yaml")
            for entry in _templates().iterdir()
            if entry.name.endswith(".yaml")
        )
    )


def area_digits(hectares: float) -> int:
    """Return the decimal places hectares are written with (0 from 10 ha, 1 from 1 ha, else 2).

    Tests and the app use this to compare a written area with the analysis files.
    """
    size = abs(hectares)
    if size >= 10 or size == 0:
        return 0
    return 1 if size >= 1 else 2


@dataclass(frozen=True)
class Language:
    """One language's texts and number, date and list conventions.

    Attributes:
        code: language code (``en``, ``es``), also the report file suffix.
        name: the language's own name.
        texts: the template file's content.

    """

    code: str
    name: str
    texts: Mapping[str, Any]

    def raw(self, key: str) -> Any:
        """Return the template value at a dotted ``key`` (a string, list or mapping).

        Raises:
            KeyError: the key is missing from this language's file.

        """
        node: Any = self.texts
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise KeyError(f"language {self.code!r} has no text {key!r}")
            node = node[part]
        return node

    def text(self, key: str, **fields: Any) -> str:
        """Return the text at a dotted ``key`` with its ``{placeholders}`` filled in."""
        template = " ".join(str(self.raw(key)).split())
        return template.format(**fields) if fields else template

    def number(self, value: float, digits: int) -> str:
        """Write ``value`` with ``digits`` decimals and this language's separators."""
        text = f"{value:,.{digits}f}"
        sep = self.raw("number")
        return "".join(
            sep["group"] if c == "," else sep["decimal"] if c == "." else c for c in text
        )

    def area(self, hectares: float) -> str:
        """Write an area in hectares (without the unit), rounded by :func:`area_digits`."""
        return self.number(hectares, area_digits(hectares))

    def factor(self, value: float) -> str:
        """Write an expansion factor (two decimals)."""
        return self.number(value, FACTOR_DIGITS)

    def percent(self, share: float) -> str:
        """Write a share (0..1) as a percentage with its unit."""
        return self.text("percent", value=self.number(share * 100, PERCENT_DIGITS))

    def date(self, day: dt.date) -> str:
        """Write a calendar date (``30 November 2026``, ``30 de noviembre de 2026``)."""
        month = self.raw("months")[day.month - 1]
        return self.text("date", day=day.day, month=month, year=day.year)

    def dates(self, start: dt.date, end: dt.date) -> str:
        """Write a period's dates: one date, or a range."""
        if start == end:
            return self.date(start)
        return self.text("range", start=self.date(start), end=self.date(end))

    def join(self, items: Sequence[str]) -> str:
        """Join items as a list in prose (``a, b and c``)."""
        words = list(items)
        if len(words) < 2:
            return "".join(words)
        sep = self.raw("list")
        return sep["separator"].join(words[:-1]) + sep["last"] + words[-1]

    def country(self, name: str) -> str:
        """Return a country's name in this language (the catalogue's name by default)."""
        return str(self.raw("countries").get(name, name))


def placeholders(template: str) -> set[str]:
    """Return the names of the ``{placeholders}`` in a template."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@functools.cache
def load_language(code: str) -> Language:
    """Read a language's template file.

    Raises:
        InputError: no template file for ``code``, naming the languages there are.

    """
    import yaml

    known = languages()
    if code not in known:
        raise InputError(f"unknown language {code!r}; briefings exist in: {', '.join(known)}")
    texts = yaml.safe_load(_templates().joinpath(f"{code}.yaml").read_text(encoding="utf-8"))
    return Language(code=code, name=str(texts.get("name", code)), texts=texts)


def as_language(language: str | Language) -> Language:
    """Return ``language`` as a :class:`Language` (a code is loaded)."""
    return language if isinstance(language, Language) else load_language(language)
