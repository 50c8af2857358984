"""What the app shows, as plain Python: the selection, its transitions and validation.

Nothing here touches widgets, so the app's behaviour is testable without a browser. The
widgets (:mod:`asmspotter.app.view`) only turn user events into calls on :class:`AppState`
and draw what :func:`visible_layers` returns.

Every value that comes from the client (the page's URL query, a widget event) is checked
here against the catalogue and the opened analysis: an unknown region, source, period or
layer is an :class:`~asmspotter.errors.InputError` with a one-line message, and no file
path or code is ever taken from the client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, cast
from urllib.parse import parse_qsl

from asmspotter.errors import InputError

#: Where the mining shown comes from: the detector's outputs or the catalogue's reference.
Source = Literal["detector", "reference"]
SOURCES: tuple[Source, ...] = ("detector", "reference")

#: The layer toggles, in the order the panel lists them. Overlay layers are keyed by their
#: catalogue kind (``protected_area``, ``mining_zone``, ``indigenous_territory``, ``other``).
LAYER_LABELS: Mapping[str, str] = {
    "mining": "Detected ASGM sites",
    "satellite": "Satellite image",
    "protected_area": "Protected areas",
    "mining_zone": "Mining areas (legal zones)",
    "indigenous_territory": "Indigenous areas",
    "other": "Other areas",
    "reference": "Reference footprints",
}
LAYER_KEYS: tuple[str, ...] = tuple(LAYER_LABELS)
#: Layers shown when a region opens (the reference outline is one click away).
DEFAULT_LAYERS: frozenset[str] = frozenset(LAYER_KEYS) - {"reference"}

#: Query parameters the app understands; anything else in the URL is refused.
QUERY_KEYS: tuple[str, ...] = ("region", "source", "period", "layers")
#: What a query value may look like (catalogue ids, period ids, layer keys, commas).
_QUERY_VALUE = re.compile(r"[A-Za-z0-9_.,-]{1,160}")


@dataclass(frozen=True)
class Request:
    """What a page's URL asks for, checked for form only (see :meth:`AppState.open`).

    Attributes:
        region: region id, or None for the landing list.
        source: ``detector`` or ``reference``, or None for the region's default.
        period: period id, or None for the last period.
        layers: layer keys to show, or None for :data:`DEFAULT_LAYERS`.

    """

    region: str | None = None
    source: str | None = None
    period: str | None = None
    layers: frozenset[str] | None = None


def parse_query(query: str) -> Request:
    """Parse a page URL's query string (``region=madre-de-dios&period=2021``).

    Args:
        query: the query string, without the leading ``?`` (empty for none).

    Raises:
        InputError: an unknown or repeated parameter, or a value that is not an id.

    """
    values: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in QUERY_KEYS:
            raise InputError(
                f"unknown parameter {key[:40]!r} in the address; known: {', '.join(QUERY_KEYS)}"
            )
        if key in values:
            raise InputError(f"parameter {key!r} is given twice in the address")
        if not _QUERY_VALUE.fullmatch(value):
            raise InputError(f"parameter {key!r} must be an id (letters, digits, '-', '_', '.')")
        values[key] = value
    layers = None
    if "layers" in values:
        layers = check_layers(values["layers"].split(","))
    return Request(values.get("region"), values.get("source"), values.get("period"), layers)


def check_layers(keys: Iterable[str]) -> frozenset[str]:
    """Return the layer keys as a set, raising :class:`InputError` for an unknown one."""
    wanted = frozenset(k for k in keys if k)
    unknown = sorted(wanted - set(LAYER_KEYS))
    if unknown:
        raise InputError(f"unknown layer(s) {', '.join(unknown)}; known: {', '.join(LAYER_KEYS)}")
    return wanted


def check_source(value: str, available: Sequence[Source], region: str) -> Source:
    """Return ``value`` as a source of ``region``.

    Raises:
        InputError: not a source, or one the region has no data for.

    """
    if value not in SOURCES:
        raise InputError(f"unknown source {value!r}; known: {', '.join(SOURCES)}")
    if value not in available:
        have = ", ".join(available) or "none"
        raise InputError(f"region {region!r} has no {value} data here (available: {have})")
    return cast(Source, value)


@dataclass(frozen=True)
class Selection:
    """What the user is looking at.

    Attributes:
        region: region id, or None on the landing list.
        source: where the mining shown comes from.
        period: the chosen period: the map shows mining of every period up to it.
        periods: the periods of the opened analysis, oldest first.
        layers: the layer keys switched on.
        basemap: whether the optional online basemap is shown.

    """

    region: str | None = None
    source: Source | None = None
    period: str | None = None
    periods: tuple[str, ...] = ()
    layers: frozenset[str] = DEFAULT_LAYERS
    basemap: bool = False

    @property
    def period_index(self) -> int:
        """Position of the chosen period among :attr:`periods` (-1 when none)."""
        return self.periods.index(self.period) if self.period in self.periods else -1

    @property
    def periods_shown(self) -> tuple[str, ...]:
        """The periods whose mining is drawn: every period up to the chosen one."""
        return self.periods[: self.period_index + 1]

    def query(self) -> str:
        """Return the URL query string that reopens this selection."""
        if self.region is None:
            return ""
        parts = [f"region={self.region}"]
        if self.source:
            parts.append(f"source={self.source}")
        if self.period:
            parts.append(f"period={self.period}")
        if self.layers != DEFAULT_LAYERS:
            parts.append("layers=" + ",".join(k for k in LAYER_KEYS if k in self.layers))
        return "&".join(parts)


@dataclass(frozen=True)
class LayerRef:
    """One layer to draw: its toggle key and, for per-period layers, the period."""

    key: str
    period: str | None = None


def visible_layers(selection: Selection, overlay_kinds: Iterable[str] = ()) -> tuple[LayerRef, ...]:
    """Return the layers to draw for a selection, bottom first.

    The satellite image of the chosen period lies at the bottom, then the overlays (only
    kinds the region has), the reference footprints and the mining of every period up to
    the chosen one, oldest first, so that each period's expansion is drawn over the
    earlier ones.
    """
    if selection.region is None or selection.period is None:
        return ()
    on = selection.layers
    refs: list[LayerRef] = []
    if "satellite" in on:
        refs.append(LayerRef("satellite", selection.period))
    kinds = set(overlay_kinds)
    refs += [LayerRef(k) for k in LAYER_KEYS if k in kinds and k in on]
    shown = selection.periods_shown
    if "reference" in on:
        refs += [LayerRef("reference", p) for p in shown]
    if "mining" in on:
        refs += [LayerRef("mining", p) for p in shown]
    return tuple(refs)


@dataclass
class AppState:
    """The app's selection and its transitions, all validated.

    Attributes:
        regions: the catalogue's region ids, in catalogue order.
        selection: the current selection.
        message: a one-line message for the user (a refused input, a missing output).

    """

    regions: tuple[str, ...]
    selection: Selection = field(default_factory=Selection)
    message: str | None = None

    def check_region(self, region: str) -> str:
        """Return ``region`` if the catalogue knows it, else raise :class:`InputError`."""
        if region not in self.regions:
            known = ", ".join(self.regions)
            raise InputError(f"unknown region {region[:40]!r}; known regions: {known}")
        return region

    def open(
        self,
        region: str,
        source: Source,
        periods: Sequence[str],
        period: str | None = None,
        layers: frozenset[str] | None = None,
    ) -> Selection:
        """Open a region's map once its analysis for ``source`` is loaded.

        Args:
            region: region id (checked against the catalogue).
            source: where the mining comes from.
            periods: the analysis's periods, oldest first.
            period: the period to show (default: the last one).
            layers: the layers to switch on (default: :data:`DEFAULT_LAYERS`).

        Raises:
            InputError: unknown region, period or layer.

        """
        self.check_region(region)
        if not periods:
            raise InputError(f"region {region!r} has no analysed period")
        chosen = self._check_period(region, period, tuple(periods)) if period else periods[-1]
        self.selection = Selection(
            region=region,
            source=source,
            period=chosen,
            periods=tuple(periods),
            layers=check_layers(layers) if layers is not None else DEFAULT_LAYERS,
            basemap=self.selection.basemap,
        )
        self.message = None
        return self.selection

    def _check_period(self, region: str, period: str, periods: tuple[str, ...]) -> str:
        if period not in periods:
            raise InputError(
                f"region {region!r} has no analysed period {period[:40]!r}; "
                f"periods: {', '.join(periods)}"
            )
        return period

    def choose_period(self, period: str) -> Selection:
        """Show mining up to ``period`` (one of the opened analysis's periods)."""
        sel = self.selection
        if sel.region is None:
            raise InputError("open a region before choosing a period")
        self.selection = replace(sel, period=self._check_period(sel.region, period, sel.periods))
        return self.selection

    def toggle_layer(self, key: str, on: bool) -> Selection:
        """Switch one layer on or off."""
        check_layers([key])
        layers = self.selection.layers | {key} if on else self.selection.layers - {key}
        self.selection = replace(self.selection, layers=frozenset(layers))
        return self.selection

    def toggle_basemap(self, on: bool) -> Selection:
        """Show or hide the optional online basemap."""
        self.selection = replace(self.selection, basemap=bool(on))
        return self.selection

    def close(self) -> Selection:
        """Go back to the landing list."""
        self.selection = Selection(basemap=self.selection.basemap)
        self.message = None
        return self.selection
