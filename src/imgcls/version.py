"""The version of imgcls (also in pyproject.toml); recorded in exported files and shown by the server."""

__version__ = "0.1.0"
