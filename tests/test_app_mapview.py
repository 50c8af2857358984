"""What the map sends the browser: the same GeoJSON, without ipywidgets' buffer search."""

from __future__ import annotations

import json
from typing import Any

import pytest
import shapely
from ipywidgets.widgets import widget as ipywidget
from jupyter_client.session import json_packer

from asmspotter.app import display
from asmspotter.app.mapview import Coordinates, SharedStyleGeoJSON, browser_copy, layer_style

UTM = "EPSG:32719"
X0, Y0 = 480_000.0, 8_560_000.0


def collection() -> display.FeatureCollection:
    """A polygon with a hole and a two-part multipolygon, in UTM zone 19S (Madre de Dios)."""
    ring = shapely.box(X0, Y0, X0 + 900, Y0 + 700)
    holed = ring.difference(shapely.box(X0 + 300, Y0 + 200, X0 + 500, Y0 + 400))
    multi = shapely.MultiPolygon(
        [
            shapely.box(X0 + 2000, Y0, X0 + 2400, Y0 + 300),
            shapely.box(X0 + 3000, Y0, X0 + 3100, Y0 + 90),
        ]
    )
    style = {"color": "#d62728", "fillColor": "#d62728"}
    return display.display_collection(
        [holed, multi], UTM, [{"period": "2019"}, {"period": "2021"}], style, 0.0
    )


def counted_walk(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls of ipywidgets' search for binary buffers (it calls itself per list)."""
    calls = [0]
    search = ipywidget._separate_buffers

    def counting(*args: Any) -> Any:
        calls[0] += 1
        return search(*args)

    monkeypatch.setattr(ipywidget, "_separate_buffers", counting)
    return calls


def test_the_browser_gets_each_features_geometry_and_index_as_plain_geojson() -> None:
    data = collection()
    layer = SharedStyleGeoJSON(data=browser_copy(data), style=layer_style(data))
    state, _, buffers = ipywidget._remove_buffers(layer.get_state())
    assert buffers == []
    sent = json.loads(json_packer(state))["data"]  # as the kernel encodes a message
    assert sent["type"] == "FeatureCollection"
    assert [f["id"] for f in sent["features"]] == [0, 1]
    assert all(f["properties"] == {} for f in sent["features"])  # the server keeps them
    assert [f["geometry"] for f in sent["features"]] == [f["geometry"] for f in data["features"]]
    assert sent["features"][0]["geometry"]["type"] == "Polygon"
    assert len(sent["features"][0]["geometry"]["coordinates"]) == 2  # shell and hole
    assert sent["features"][1]["geometry"]["type"] == "MultiPolygon"


def test_the_buffer_search_does_not_enter_the_coordinates(monkeypatch: pytest.MonkeyPatch) -> None:
    data = collection()
    calls = counted_walk(monkeypatch)
    ipywidget._remove_buffers({"data": browser_copy(data)})
    wrapped = calls[0]
    calls[0] = 0
    ipywidget._remove_buffers({"data": data})
    plain = calls[0]
    # the wrapped copy: the collection, its features and their dicts only; the plain one
    # is searched list by list, down to each of the 20 vertices of the four rings
    assert wrapped <= 3 + 3 * len(data["features"])
    assert plain >= wrapped + 20
    assert isinstance(browser_copy(data)["features"][0]["geometry"]["coordinates"], Coordinates)
