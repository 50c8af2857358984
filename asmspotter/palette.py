"""Colours shared by the briefings' static maps and the interactive app.

One home for the palette: each period's expansion over the previous one has its own colour
(the first period's colour marks everything up to it), overlays are outlined by kind, and the
reference footprints have a colour of their own. Colours are hex strings, usable by
matplotlib and by Leaflet alike.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Colours of successive periods' mining (oldest first): a dark-to-bright sequence that
#: stays distinct for colour-blind readers and on the satellite image. Longer series cycle.
PERIOD_COLOURS: tuple[str, ...] = (
    "#5c2a0d",  # everything up to the first period: dark brown
    "#b35806",
    "#f1a340",
    "#e7298a",
    "#d7301f",
    "#fee090",
    "#9e0142",
    "#fdae61",
)

#: Outline colour of each overlay kind (see :data:`asmspotter.catalogue.OVERLAY_KINDS`).
OVERLAY_COLOURS: Mapping[str, str] = {
    "protected_area": "#1b7837",
    "indigenous_territory": "#762a83",
    "mining_zone": "#2166ac",
    "other": "#4d4d4d",
}

#: Outline colour of reference footprints (e.g. Amazon Mining Watch's).
REFERENCE_COLOUR = "#00bcd4"
#: Colour of pixels no clear observation covered.
UNOBSERVED_COLOUR = "#bdbdbd"


def period_colour(index: int) -> str:
    """Return the colour of the ``index``-th period (0 = the first) of a series."""
    if index < 0:
        raise ValueError(f"period index must be >= 0, not {index}")
    return PERIOD_COLOURS[index % len(PERIOD_COLOURS)]


def period_colours(periods: int) -> list[str]:
    """Return one colour per period of a series of ``periods`` periods, oldest first."""
    return [period_colour(i) for i in range(periods)]


def overlay_colour(kind: str) -> str:
    """Return the outline colour of an overlay of ``kind`` (unknown kinds get ``other``'s)."""
    return OVERLAY_COLOURS.get(kind, OVERLAY_COLOURS["other"])
