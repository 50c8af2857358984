"""Sub-commands of the ``asmspotter`` CLI, one module each (see :mod:`asmspotter.cli`)."""
