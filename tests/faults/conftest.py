"""Fixtures of the fault tests: the in-process SMTP server of the SMTP server's own tests, reused by name."""

from tests.ingest.test_smtp import run_server, settings, smtp_server  # noqa: F401 - fixtures, found by name
