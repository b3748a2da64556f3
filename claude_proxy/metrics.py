"""Stable import path for the gunicorn hook `claude_proxy.metrics.child_exit` (lives in `server/`)."""

from claude_proxy.server.multiproc import child_exit

__all__ = ["child_exit"]
