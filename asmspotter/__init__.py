"""ASMSpotter: find artisanal and small-scale gold mining in Sentinel-2 imagery.

The package is organised by stage, data flowing one way::

    catalogue -> acquire -> composite -> detect -> analyse -> report / app

Every computation lives here as typed functions; the CLI, notebooks and the
Voila app only call them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
