"""Centrala: e-mail and telephone contacts turned into customer history and SLA-tracked tickets."""

__version__ = "0.1.0"
