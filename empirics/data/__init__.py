"""Offline data for the five architectures; nothing here downloads."""

from __future__ import annotations


class DataUnavailable(RuntimeError):
    """A data source is not installed; the message names the package that provides it."""
