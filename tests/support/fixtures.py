"""Where the real Claude Code request bodies live: `shared/` beside the repository."""

from __future__ import annotations

from pathlib import Path

CLAUDE_CODE_FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "claude-code"
if not CLAUDE_CODE_FIXTURES.is_dir() or not any(CLAUDE_CODE_FIXTURES.glob("*.json")):
    # fail loudly: a missing directory must not turn fixture-driven tests into zero tests
    raise RuntimeError(f"Claude Code fixtures not found at {CLAUDE_CODE_FIXTURES} (shared/ must sit beside the repo)")
