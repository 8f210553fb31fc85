"""The version of vgc_ref and mpi_demo, in one place (pyproject.toml reads it from here)."""

__version__ = "0.2.0"
