"""The package version, used in the User-Agent (kept equal to pyproject.toml by a test)."""

__version__ = "0.1.0"
