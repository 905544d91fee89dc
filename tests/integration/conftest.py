"""Integration fixtures: the in-process coordinator (see api_fixtures)."""

from api_fixtures import market

__all__ = ["market"]
