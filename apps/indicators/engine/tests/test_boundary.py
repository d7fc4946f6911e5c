"""The engine is pure computation: importing and using it loads no Django, DRF, Channels
or Celery module (the import-linter contract in pyproject.toml states the same)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]


def test_engine_imports_no_django():
    code = (
        "import sys, apps.indicators.engine as e; e.IndicatorEngine().update(['A'], [1.0]); "
        "bad = sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('django', 'rest_framework', 'channels', 'celery')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "[]"
