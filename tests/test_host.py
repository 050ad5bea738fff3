"""The allocator settings a training process asks for (`empirics.host`)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from empirics import host


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_tune_allocator_applies_every_setting_once_and_says_so() -> None:
    # In a fresh process (the setting is per process): glibc accepts every setting, the answer
    # names each value, and a second call answers the same without asking again.
    code = (
        "from empirics import host; first = host.tune_allocator(); "
        "host.SETTINGS.clear(); print(first); print(host.tune_allocator())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = out.stdout.strip().splitlines()
    assert first == second
    if platform.libc_ver()[0] != "glibc":  # musl has no mallopt: "default" is the honest answer
        assert first == "default"
        return
    assert first.startswith("glibc mallopt: ")
    for name, (_, value) in host.SETTINGS.items():
        assert f"{name}={value >> 20} MiB" in first


def test_tune_allocator_reports_default_where_mallopt_is_missing(monkeypatch) -> None:
    monkeypatch.setattr(host, "_applied", None)
    monkeypatch.setattr(host.sys, "platform", "darwin")
    assert host.tune_allocator() == "default"
    monkeypatch.setattr(host, "_applied", None)
    monkeypatch.setattr(host.sys, "platform", "linux")

    def no_libc(*args, **kwargs):
        raise OSError("no libc here")

    monkeypatch.setattr(host.ctypes, "CDLL", no_libc)
    assert host.tune_allocator() == "default"
