"""Shared test settings: hypothesis profiles and the PostgreSQL DSN.

``CCFAST_TEST_PG_DSN`` names the PostgreSQL server for the store tests (default: the local
server, ``postgresql://postgres@127.0.0.1:5432/test``). Outside CI a test may skip when that server
is unreachable; under ``CI=true`` it must fail instead.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

PG_DSN = os.environ.get("CCFAST_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
