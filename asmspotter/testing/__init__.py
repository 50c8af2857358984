"""Test helpers shipped with the package (like odc-stac's ``odc.stac.testing``).

- :mod:`asmspotter.testing.synthetic`: seeded generator of small Sentinel-2-like COG scenes
  with a real UTM CRS and transform, an SCL (or QA60) cloud layer with known cloud pixels,
  scale/offset metadata and matching STAC item JSON.
- :mod:`asmspotter.testing.stac_server`: a threaded STAC API on 127.0.0.1 that serves those
  items and COGs (with HTTP range requests) and can be told to fail, hang or truncate; in
  its Planetary-Computer mode it also hands out SAS tokens and stands in, as an HTTP proxy
  for GDAL, for the Azure blob storage holding the assets. Its request handler and STAC
  documents are in :mod:`~asmspotter.testing.stac_handler` and
  :mod:`~asmspotter.testing.stac_api`.

Nothing here contacts the internet.
"""
