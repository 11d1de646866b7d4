"""Fixtures of the fault tests: the in-process SMTP server of the tests, found by name."""

from tests.support.smtp import run_server, settings, smtp_server  # noqa: F401 - fixtures, found by name
