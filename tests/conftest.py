"""Shared pytest setup: hypothesis profiles `dev` (make test) and `verify` (make verify)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Verbosity, settings

# `dev` is derandomized: `make test` (and CI) checks the same examples every run; `verify`
# explores fresh random examples each time.
settings.register_profile(
    "dev",
    max_examples=12,
    derandomize=True,
    deadline=None,
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "verify",
    max_examples=60,
    deadline=None,
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("debug", max_examples=10, deadline=None, verbosity=Verbosity.verbose)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-tensor tests: with two busy cores a second
    intra-op thread only adds contention."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
