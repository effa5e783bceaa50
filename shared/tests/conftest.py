"""Shared-library tests run against a real redis-server (see aerie.testing.fixtures)."""

pytest_plugins = ["aerie.testing.fixtures"]
