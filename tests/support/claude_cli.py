"""The real Claude Code CLI for end-to-end tests: installed from the npm registry into a cache folder, once.

``claude_binary()`` returns the path of a working ``claude`` executable, installing
``@anthropic-ai/claude-code@CLAUDE_CODE_VERSION`` with ``npm install --prefix <repo>/.cache/claude-code/<version>``
the first time (idempotent; concurrent sessions serialise on a lock file). The npm package ships the native
binary inside an optional dependency (``@anthropic-ai/claude-code-linux-x64``), so no other download happens.

Environment:
  CLAUDE_CODE_BIN      use this existing ``claude`` executable instead of installing one
  CLAUDE_CODE_VERSION  the npm version to install (default: the pinned, tested ``DEFAULT_VERSION``)

When the CLI cannot be had for a reason outside the project (no node/npm, no registry access) the helper raises
``ClaudeUnavailable`` with a message saying so; tests turn that into a skip. Any other install failure raises
``RuntimeError`` so that a real problem fails the run instead of hiding behind a skip.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "claude-code"
PACKAGE = "@anthropic-ai/claude-code"
DEFAULT_VERSION = "2.1.332"  # the version these tests were last run with; CLAUDE_CODE_VERSION=latest to float
INSTALL_TIMEOUT = 300.0

# npm error codes that mean "the registry cannot be reached", not "the project is broken".
_OFFLINE = re.compile(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|network", re.I)


class ClaudeUnavailable(Exception):
    """The CLI cannot be installed here for a reason outside the project (the message says which)."""


def version() -> str:
    return os.environ.get("CLAUDE_CODE_VERSION", "").strip() or DEFAULT_VERSION


def _works(path: Path) -> str | None:
    """The binary's ``--version`` line if it runs, else None (a stub left by a skipped postinstall fails here)."""
    try:
        done = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = done.stdout.strip()
    return line if done.returncode == 0 and "Claude Code" in line else None


def _find_in(prefix: Path) -> Path | None:
    """The working binary under an npm prefix: the wrapper's bin, else the platform package's own binary."""
    modules = prefix / "node_modules" / "@anthropic-ai"
    candidates = [modules / "claude-code" / "bin" / "claude.exe", *sorted(modules.glob("claude-code-*/claude"))]
    for candidate in candidates:
        if candidate.is_file() and _works(candidate):
            return candidate
    return None


def installed_version(path: Path) -> str:
    """``2.1.330`` from ``2.1.330 (Claude Code)``."""
    line = _works(path) or ""
    return line.split()[0] if line else ""


def claude_binary() -> Path:
    """A runnable ``claude``: $CLAUDE_CODE_BIN, else the cached install, else a fresh npm install into the cache."""
    explicit = os.environ.get("CLAUDE_CODE_BIN", "").strip()
    if explicit:
        path = Path(explicit)
        if not _works(path):
            raise RuntimeError(f"CLAUDE_CODE_BIN={explicit} does not run `--version` successfully")
        return path
    wanted = version()
    prefix = CACHE / wanted
    if wanted != "latest" and (found := _find_in(prefix)):
        return found
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise ClaudeUnavailable("node and npm are not installed: cannot install the Claude Code CLI from npm")
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may be installing right now
        if wanted != "latest" and (found := _find_in(prefix)):
            return found
        return _install(npm, wanted, prefix)


def _install(npm: str, wanted: str, prefix: Path) -> Path:
    """npm install into a scratch folder, then move it into place, so a broken install never looks cached."""
    scratch = Path(tempfile.mkdtemp(prefix=".install-", dir=CACHE))
    started = time.monotonic()
    try:
        command = [npm, "install", "--prefix", str(scratch), "--no-save", "--no-audit", "--no-fund"]
        command.append(f"{PACKAGE}@{wanted}")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ClaudeUnavailable(
                f"`npm install {PACKAGE}@{wanted}` took over {INSTALL_TIMEOUT:.0f}s (no registry access?)"
            ) from None
        output = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            tail = "\n".join(output.splitlines()[-15:])
            if _OFFLINE.search(output):
                raise ClaudeUnavailable(f"cannot reach the npm registry to install {PACKAGE}@{wanted}:\n{tail}")
            raise RuntimeError(f"`npm install {PACKAGE}@{wanted}` failed ({done.returncode}):\n{tail}")
        found = _find_in(scratch)
        if found is None:
            raise RuntimeError(f"npm installed {PACKAGE}@{wanted} but no runnable claude binary was found:\n{output}")
        actual = installed_version(found)
        target = CACHE / actual if wanted == "latest" else prefix
        if target.exists():
            shutil.rmtree(target)
        scratch.rename(target)
        target.chmod(0o755)  # mkdtemp made it private
        (target / "install-seconds.txt").write_text(f"{time.monotonic() - started:.1f}\n")
        result = _find_in(target)
        assert result is not None
        return result
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
