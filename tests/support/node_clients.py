"""Node clients for end-to-end tests (@anthropic-ai/sdk, the Vercel AI SDK), installed from the npm registry.

``node_clients()`` returns the folder whose ``node_modules`` holds the pinned packages, running
``npm install`` into ``<repo>/.cache/node-clients/<hash of the pins>`` the first time (concurrent sessions
serialise on a lock). ``NodeUnavailable`` means the machine cannot have them (no node/npm, no registry): tests
skip with its message. ``run_node(script, env)`` runs one of ``tests/e2e/clients/*.mjs`` there.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "node-clients"
SCRIPTS = ROOT / "tests" / "e2e" / "clients"
# the versions these tests were last run with (NODE_CLIENTS_LATEST=1 floats them)
PINS = {"@anthropic-ai/sdk": "1.16.0", "ai": "6.0.333", "@ai-sdk/anthropic": "3.0.140", "zod": "4.6.7"}


class NodeUnavailable(Exception):
    """node, npm or the registry is missing here (the message says which)."""


def node_clients() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise NodeUnavailable("node and npm are not installed: cannot run the TypeScript clients")
    pins = {k: "latest" for k in PINS} if os.environ.get("NODE_CLIENTS_LATEST") else PINS
    folder = CACHE / hashlib.sha256(json.dumps(pins, sort_keys=True).encode()).hexdigest()[:12]
    marker = folder / ".installed"
    if marker.exists():
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text(json.dumps({"name": "claude-proxy-test-clients", "private": True}))
        command = [npm, "install", "--no-audit", "--no-fund", *(f"{k}@{v}" for k, v in pins.items())]
        try:
            done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise NodeUnavailable("npm install took over 300 s (no registry access?)") from None
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
            raise NodeUnavailable(f"npm install of the test clients failed:\n{tail}")
        marker.write_text("ok")
    return folder


def run_node(script: str, env: dict[str, str], timeout: float = 120.0) -> dict[str, Any]:
    """Run tests/e2e/clients/<script> with the clients installed; its last stdout line is JSON."""
    folder = node_clients()
    target = folder / script
    shutil.copyfile(SCRIPTS / script, target)  # resolved from there: its imports find node_modules
    done = subprocess.run(
        ["node", str(target)], cwd=folder, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
    )
    if done.returncode != 0:
        raise AssertionError(f"{script} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
