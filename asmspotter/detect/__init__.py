"""Mining detection: model, chip data, training, chip evaluation and tiled inference.

Heavy dependencies (torch) are imported by the submodules that need them, so that
``import asmspotter.detect`` stays cheap.
"""

from __future__ import annotations

#: Name of the shipped model (weights ``<name>.pt`` and card ``<name>.card.json``).
DEFAULT_MODEL = "asm-rgb-v4"

__all__ = ["DEFAULT_MODEL"]
