"""Fixtures of the ingest tests: the in-process SMTP server (a module's own ``settings`` fixture wins)."""

from tests.support.smtp import run_server, settings, smtp_server  # noqa: F401 - fixtures, found by name
