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
"""

from __future__ import annotations

import os
from pathlib import Path

from asmspotter.errors import DataError

#: Root of the source checkout (the folder holding ``asmspotter/`` and ``data/``).
PROJECT_ROOT: Path = Path(__file__).resolve().parent.parent

SHARED_DATA_ENV = "ASMSPOTTER_SHARED_DATA"
CACHE_ENV = "ASMSPOTTER_CACHE"
OUTPUT_ENV = "ASMSPOTTER_OUTPUT"


def project_data_dir() -> Path:
    """Return the project's own ``data/`` folder (catalogue, model weights, configs)."""
    return PROJECT_ROOT / "data"


def shared_data_dir() -> Path:
    """Return the folder of shared real data (it may not exist on this machine)."""
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (PROJECT_ROOT.parent / "shared" / "data").resolve()


def shared_data_available() -> bool:
    """Return True when the shared data folder exists and holds its README."""
    return (shared_data_dir() / "README.md").is_file()


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
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / "cache"


def output_dir() -> Path:
    """Return the folder for generated outputs (detections, analyses, reports)."""
    env = os.environ.get(OUTPUT_ENV)
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / "reports"


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
