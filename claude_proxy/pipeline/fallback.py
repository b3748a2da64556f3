"""The chain loop: try each target of a route's chain in health order until one answers.

A target whose failure is the provider's fault (unreachable, timed out, 429, 5xx) is marked in
`ProviderHealth` and the next target is tried; the last target's failure is the client's answer.
Every reply and error says which target it came from (x-claude-proxy-* headers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from claude_proxy.config.loader import Config
from claude_proxy.errors import MissingProviderKey, ProxyError
from claude_proxy.pipeline.outcome import FailedAttempt, Outcome, Recorder
from claude_proxy.pipeline.reply import Reply
from claude_proxy.pipeline.route import Attempt, TargetPolicy, falls_back
from claude_proxy.routing.router import Plan, ProviderHealth
from claude_proxy.upstream.client import Upstream

Serve = Callable[[Attempt, float], Reply]  # (the target, the chain's one deadline) → its reply
log = logging.getLogger("claude_proxy")


class Chains:
    def __init__(
        self,
        config: Config,
        upstreams: Mapping[str, Upstream],
        health: ProviderHealth,
        recorder: Recorder,
        label: Callable[[str], str],
    ) -> None:
        self.config = config
        self.upstreams = upstreams
        self.health = health
        self.recorder = recorder
        self.label = label
        self._warned: set[str] = set()  # providers whose missing key was logged (once per process)
        self._warned_lock = threading.Lock()

    def attempts(self, plan: Plan, session: str | None = None) -> list[Attempt]:
        targets = self.health.order(plan.chain, session=session)
        return [
            Attempt(
                target,
                self.config.providers[target.provider],
                self.upstreams[target.provider],
                self.label(target.provider),
                last=n == len(targets) - 1,
            )
            for n, target in enumerate(targets)
        ]

    def serve(
        self, plan: Plan, outcome: Outcome, serve: Serve, session: str | None = None, policy: TargetPolicy | None = None
    ) -> Reply:
        """The first target's answer that is not the provider's fault (or the last target's failure).

        With a session (Claude Code's), the target that served its previous request is tried first
        while healthy, so the provider's prompt cache stays warm. The whole chain shares one deadline (`[upstream] timeout`): a slow first target leaves the
        rest of the chain less time, never more.
        """
        deadline = time.monotonic() + self.config.timeouts.total
        attempts = self.attempts(plan, session)
        if policy is not None:
            attempts = policy.check(attempts)
        for attempt in attempts:
            outcome.provider, outcome.upstream_model = attempt.label, attempt.target.model
            served = {
                "x-claude-proxy-route": plan.route,
                "x-claude-proxy-provider": attempt.label,
                "x-claude-proxy-model": attempt.target.model,
            }
            if outcome.trace is not None:
                outcome.trace.begin_attempt(attempt)
            try:
                reply = serve(attempt, deadline)
            except MissingProviderKey as error:
                if attempt.last:
                    error.headers.update(served)
                    raise
                self._warn_missing_key(attempt, error)
                if outcome.trace is not None:
                    outcome.trace.attempt_failed(error.status, error.error_type)
                continue
            except ProxyError as error:
                if outcome.trace is not None and not attempt.last:
                    outcome.trace.attempt_failed(error.status, error.error_type)
                if falls_back(error):
                    self.health.failure(attempt.target.provider)
                    outcome.failed(_failure(attempt, error, self.recorder))
                    if not attempt.last:
                        continue
                error.headers.update(served)  # an error too says which target it came from
                raise
            # an Anthropic error passed back unmodified (the last target's 429/5xx) is still a failure
            if reply.status == 429 or reply.status >= 500:
                self.health.failure(attempt.target.provider)
            else:
                self.health.success(attempt.target.provider)
                self.health.served(plan.chain, session, attempt.target)  # its cache is warm there now
            reply.headers.update(served)
            return reply
        raise AssertionError("unreachable: a chain has at least one target")  # pragma: no cover

    def _warn_missing_key(self, attempt: Attempt, error: ProxyError) -> None:
        with self._warned_lock:
            if attempt.label in self._warned:
                return
            self._warned.add(attempt.label)
        log.warning("claude-proxy: skipping %s in fallback chains: %s", attempt.label, error.message)


def _failure(attempt: Attempt, error: ProxyError, recorder: Recorder) -> FailedAttempt:
    return FailedAttempt(
        provider=attempt.label,
        model=attempt.target.model,
        status=error.status,
        error_type=error.error_type,
        error=recorder.redact(error.message),
    )
