"""The `aladdin` command-line client of the Aladdin portal (docs/cli.md)."""

__version__ = "0.1.0"
