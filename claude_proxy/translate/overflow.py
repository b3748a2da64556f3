"""Context-window overflow, as Anthropic says it: `prompt is too long: N tokens > M maximum`.

Every client that compacts on overflow (Claude Code, the SDKs' compaction helpers, other agents)
matches Anthropic's wording; providers each have their own. `parse_overflow` reads the provider
wordings below into numbers, `overflow_envelope` writes Anthropic's, and `overflow_error` lets the
pipeline answer the same way before spending an upstream call when a model's window is configured.

Wordings (as the servers print them, numbers varying):
  OpenAI / DeepSeek / Groq / vLLM (old) / OpenRouter:
    code `context_length_exceeded`; "This model's maximum context length is 128000 tokens. However,
    you requested 140000 tokens (130000 in the messages, 10000 in the completion)." (OpenRouter:
    "This endpoint's maximum context length is …", "… of text input, … in the output")
  vLLM (current, vllm/entrypoints): "This model's maximum context length is 32768 tokens. However,
    you requested 32000 output tokens and your prompt contains 1000 input tokens …"
  SGLang: "Requested token count exceeds the model's maximum context length of 4096 tokens. You
    requested a total of 5000 tokens: 4000 tokens from the input messages and 1000 tokens for the
    completion." and "The input (5000 tokens) is longer than the model's context length (4096 tokens)."
  Ollama: "prompt too long; exceeded max context length by 120 tokens", "the input length exceeds
    the context length"
  Mistral: "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum
    context length"
  Gemini: "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
  llama.cpp (tools/server, type `exceed_context_size_error`, also Ollama's new engine): "request (20014
    tokens) exceeds the available context size (16384 tokens), try increasing it"; older builds: "the
    request exceeds the available context size, try increasing it"
  Kimi: "Your request exceeded model token limit: 262144 (requested: 300000)"

Only the prompt overflowing is an overflow. When the prompt fits and only prompt + max_tokens
does not (vLLM and SGLang count both), `completion_room` says how many output tokens fit — for
this request only: it is never a max_tokens limit to remember.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import envelope


def _n(name: str) -> str:
    return rf"(?P<{name}>\d[\d,]*)(?:\.0)?"


P, M, C = _n("p"), _n("m"), _n("c")  # prompt tokens, maximum (the window), completion tokens

# Tried in order, first match wins; the named groups say which number is which.
_WORDINGS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE | re.DOTALL)
    for p in (
        # SGLang / newer vLLM: total = input + completion
        rf"maximum context length of {M} tokens.*?{P} tokens from the input messages and {C} tokens for the completion",
        # vLLM: max_tokens too large for the room left beside the prompt
        rf"is too large: {C}\. This model's maximum context length is {M} tokens and your request has {P} input tokens",
        # vLLM current
        rf"maximum context length is {M} tokens.*?requested {C} output tokens and your prompt contains {P} input tokens",
        # OpenAI / DeepSeek / OpenRouter with the split
        rf"maximum context length is {M} tokens.*?\({P} (?:in the messages|of text input)(?:, {C} in the (?:completion|output))?",
        # OpenAI-style without the split
        rf"maximum context length is {M} tokens.*?(?:resulted in|requested(?: about)?) {P} tokens",
        rf"The input \({P} tokens\) is longer than the model's context length \({M} tokens\)",
        rf"Prompt contains {P} tokens.*?too large for model with {M} maximum context length",
        rf"input token count \({P}\) exceeds the maximum number of tokens allowed \({M}\)",
        rf"exceeded model token limit: {M} \(requested: {P}\)",
        rf"request \({P} tokens\) exceeds the available context size \({M} tokens\)",
        rf"prompt is too long: {P} tokens > {M} maximum",
        rf"maximum context length is {M} tokens",
        r"context_length_exceeded|context length exceeded|input length exceeds the context length"
        r"|exceeds the available context size|exceeds the maximum number of tokens allowed"
        r"|model_context_window_exceeded|context window exceeds limit|prompt too long",
    )
)


@dataclass(frozen=True)
class Overflow:
    """What an overflow error says: None where the provider did not say it."""

    prompt_tokens: int | None = None
    maximum: int | None = None
    completion_tokens: int | None = None

    @property
    def prompt_fits(self) -> bool:
        """The prompt alone fits: only the requested completion pushed it over the window."""
        return (
            self.prompt_tokens is not None
            and self.maximum is not None
            and self.completion_tokens is not None
            and self.prompt_tokens < self.maximum
        )

    @property
    def completion_room(self) -> int | None:
        """Output tokens that fit beside this prompt, when the prompt fits."""
        if not self.prompt_fits:
            return None
        assert self.prompt_tokens is not None and self.maximum is not None
        return self.maximum - self.prompt_tokens


def _int(text: str | None) -> int | None:
    return int(text.replace(",", "")) if text else None


def parse_overflow(message: str, code: str | None = None) -> Overflow | None:
    """The overflow a provider error describes, or None if it is about something else."""
    for pattern in _WORDINGS:
        match = pattern.search(message)
        if match is not None:
            found = {k: _int(v) for k, v in match.groupdict().items()}
            return Overflow(found.get("p"), found.get("m"), found.get("c"))
    if code and "context_length" in code.lower():
        return Overflow()
    return None


def overflow_message(overflow: Overflow, estimate: int | None = None) -> str:
    """Anthropic's wording; numbers from the provider where it gave them, else the estimate."""
    maximum = overflow.maximum
    prompt = overflow.prompt_tokens if overflow.prompt_tokens is not None else estimate
    if maximum is None:
        if prompt is None:
            return "prompt is too long: the conversation exceeds the model's context window"
        return f"prompt is too long: {prompt} tokens > model's maximum context"
    if prompt is None or prompt <= maximum:
        # the provider counted prompt + completion, or gave no count: the prompt is at least over
        prompt = max(prompt or 0, maximum + 1)
    return f"prompt is too long: {prompt} tokens > {maximum} maximum"


def overflow_envelope(overflow: Overflow, estimate: int | None = None) -> dict[str, Any]:
    return envelope("invalid_request_error", overflow_message(overflow, estimate))


def upstream_overflow(payload: Any, message: str, estimate: int | None = None) -> dict[str, Any] | None:
    """The Anthropic envelope for a provider error body that reports an overflow, else None.
    A request whose prompt fits (only max_tokens was too many) is not an overflow."""
    code = None
    err = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(err, dict):
        code = str(err.get("code") or err.get("type") or "") or None
    overflow = parse_overflow(message, code)
    if overflow is None or overflow.prompt_fits:
        return None
    return overflow_envelope(overflow, estimate)


_NUMBERLESS = re.compile(
    r"prompt is too long: (?:(?P<p>\d+) tokens > model's maximum context|the conversation exceeds the model's context window)"
)


def with_window(message: str, window: int | None, estimate: int | None = None) -> str | None:
    """A provider overflow that named no maximum (Ollama, older llama.cpp), completed with the
    model's configured window and the proxy's estimate: Claude Code sizes its compaction from
    both numbers. None for any other message, and when there is nothing to add."""
    match = _NUMBERLESS.fullmatch(message)
    if match is None:
        return None
    completed = overflow_message(Overflow(_int(match.group("p")), window), estimate)
    return completed if completed != message else None


def overflow_error(body_estimate: int, context_window: int | None) -> dict[str, Any] | None:
    """Before an upstream call: the overflow envelope when the estimated prompt cannot fit the
    configured window, else None. The estimate (translate.tokens) is approximate, so this is the
    cheap answer for a prompt plainly over; the provider still decides near the edge."""
    if not context_window or body_estimate <= context_window:
        return None
    return overflow_envelope(Overflow(body_estimate, context_window))
