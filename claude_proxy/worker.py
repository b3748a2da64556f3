"""Stable import path for gunicorn's `-k claude_proxy.worker.GracefulThreadWorker` (lives in `server/`)."""

from claude_proxy.server.worker import GracefulThreadWorker

__all__ = ["GracefulThreadWorker"]
