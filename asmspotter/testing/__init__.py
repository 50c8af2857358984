"""Test helpers shipped with the package (like odc-stac's ``odc.stac.testing``).

- :mod:`asmspotter.testing.synthetic`: seeded generator of small Sentinel-2-like COG scenes
  with a real UTM CRS and transform, an SCL (or QA60) cloud layer with known cloud pixels,
  scale/offset metadata and matching STAC item JSON.
- :mod:`asmspotter.testing.stac_server`: a threaded STAC API on 127.0.0.1 that serves those
  items and COGs (with HTTP range requests) and can be told to fail, hang or truncate.

Nothing here contacts the internet.
"""
