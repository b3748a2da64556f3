"""Where the real Claude Code request bodies live: `shared/` beside the repository.

A bare clone has no `shared/`: tests that need those bodies then skip with `MISSING` as the reason
(tests/conftest.py), so the README's test command still passes there. Under `CI=true` a missing
directory is an error at once: it must never quietly turn fixture-driven tests into zero tests.
"""

from __future__ import annotations

import os
from pathlib import Path

CLAUDE_CODE_FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "claude-code"
PRESENT = CLAUDE_CODE_FIXTURES.is_dir() and any(CLAUDE_CODE_FIXTURES.glob("*.json"))
MISSING = f"needs the captured Claude Code bodies in {CLAUDE_CODE_FIXTURES} (shared/ beside the repository)"
REQUIRED = os.environ.get("CI", "").lower() == "true"

if not PRESENT and REQUIRED:
    raise RuntimeError(f"Claude Code fixtures not found at {CLAUDE_CODE_FIXTURES} (CI=true requires them)")
