"""Test support: what the tests and the root conftest.py share, other than fixtures.

Real processes and the database URL they get (`processes`), a TCP proxy to take a server
down (`network`), polling (`waiting`), Django on the TimescaleDB test server (`timescale`),
the factories of test data (`factories`), browsers (`browser`) and a loopback Alpaca
market-data server that speaks the vendor's protocol (`alpaca`). A plain package, not a
Django app; the app never imports it (an import-linter contract in pyproject.toml).
Fixtures stay in conftest.py.
"""

from __future__ import annotations

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]  # the repository root
