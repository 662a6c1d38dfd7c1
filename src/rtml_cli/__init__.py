"""rtml: measure what moving from batch to online ML would buy, on your own logs."""

# The one place the version is written: pyproject.toml reads it ([tool.setuptools.dynamic]).
# Keep this module free of imports, so reading the version (and `rtml --help`) stays cheap.
__version__ = "0.1.0"
