"""Where things live: the project's data, the shared real data, caches and outputs.

Every location can be overridden with an environment variable so that tests,
CI and analysts can point the tool elsewhere:

=========================  =============================================
variable                   default
=========================  =============================================
``ASMSPOTTER_SHARED_DATA``  ``<project root>/../shared/data``
``ASMSPOTTER_CACHE``        ``<project root>/cache`` (composites)
``ASMSPOTTER_OUTPUT``       ``<project root>/reports`` (detections, analyses, reports)
=========================  =============================================

The project root is the source checkout when the package runs from one (editable
installs too), else the current working folder (a package installed with ``pip install .``).
The project's own data (the regions catalogue, the shipped models) is package data, found
through :mod:`importlib.resources` wherever the package is installed.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from asmspotter.errors import DataError

#: The folder holding the ``asmspotter`` package: the root of a source checkout (the folder
#: holding ``asmspotter/``, ``data/`` and ``pyproject.toml``), or ``site-packages`` when
#: the package is installed.
PROJECT_ROOT: Path = Path(__file__).resolve().parent.parent

#: The package's resources folder: in a source checkout a link to the top-level ``data/``
#: folder, installed as package data.
RESOURCES = "resources"
#: Sub-folder of the resources that holds the shipped models (weights, cards, docs).
MODELS = "models"
#: Names of the default cache and output folders below the project root.
CACHE_FOLDER = "cache"
OUTPUT_FOLDER = "reports"

SHARED_DATA_ENV = "ASMSPOTTER_SHARED_DATA"
CACHE_ENV = "ASMSPOTTER_CACHE"
OUTPUT_ENV = "ASMSPOTTER_OUTPUT"


def source_checkout() -> Path | None:
    """Return the source checkout the package runs from, or None when it is installed."""
    return PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else None


def project_root() -> Path:
    """Return the folder the default locations sit in (see the module's docstring)."""
    return source_checkout() or Path.cwd()


def project_data_dir() -> Path:
    """Return the project's own data folder (catalogue, model weights), as package data."""
    return Path(str(importlib.resources.files("asmspotter").joinpath(RESOURCES)))


def models_dir() -> Path:
    """Return the folder of the shipped models (``data/models`` in a source checkout)."""
    return project_data_dir() / MODELS


def shared_data_dir() -> Path:
    """Return the folder of shared real data (it may not exist on this machine)."""
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (project_root().parent / "shared" / "data").resolve()


def shared_data_available() -> bool:
    """Return True when the shared data folder exists and holds its README."""
    return (shared_data_dir() / "README.md").is_file()


def shared_data_hint(path: str | os.PathLike[str]) -> str:
    """Return the hint for a missing file below an absent shared data folder, else ``""``.

    The hint, for error messages: `` (shared data not found at ...; set
    ASMSPOTTER_SHARED_DATA to the shared data folder)``.
    """
    folder = shared_data_dir()
    if folder.is_dir() or folder not in Path(path).resolve().parents:
        return ""
    return f" (shared data not found at {folder}; set {SHARED_DATA_ENV} to the shared data folder)"


def require_shared_data(*parts: str) -> Path:
    """Return a path inside the shared data folder, raising if it does not exist.

    Args:
        *parts: path components below the shared data folder.

    Raises:
        DataError: the file or folder is absent, with a hint about the variable.

    """
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        raise DataError(
            f"shared data not found: {path} (set {SHARED_DATA_ENV} to the folder "
            "holding the shared data)"
        )
    return path


def cache_dir() -> Path:
    """Return the cache folder for composites (created on demand by writers)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser().resolve() if env else project_root() / CACHE_FOLDER


def output_dir() -> Path:
    """Return the folder for generated outputs (detections, analyses, reports)."""
    env = os.environ.get(OUTPUT_ENV)
    return Path(env).expanduser().resolve() if env else project_root() / OUTPUT_FOLDER


def writable_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create ``path`` if needed and check that files can be written in it.

    Commands call this before long work, so that a bad output path fails at once rather
    than after an hour of training.

    Raises:
        InputError: the folder cannot be created or written to.

    """
    from asmspotter.errors import InputError

    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the {what} {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write to the {what} {folder}: permission denied")
    return folder
