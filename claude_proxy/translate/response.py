"""OpenAI Chat Completions response → Anthropic message, and the rules both paths share:
finish reasons, usage, reasoning fields, tool-argument repair."""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

from .dialect import Dialect
from .identifiers import to_anthropic_id
from .request import STRUCTURED_WRAP_KEY, RequestContext

FINISH_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "end_turn": "end_turn",
    "eos": "end_turn",
    "stop_sequence": "end_turn",
    "length": "max_tokens",
    "max_tokens": "max_tokens",
    "model_length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "tool_use": "tool_use",
    "content_filter": "refusal",
    "safety": "refusal",
    "recitation": "refusal",
    "refusal": "refusal",
}
ERROR_FINISH_REASONS = frozenset({"error", "network_error", "insufficient_system_resource"})

THINK_TAGS = (("<think>", "</think>"), ("<thought>", "</thought>"))


def random_hex(nbytes: int = 12) -> str:
    """Unique, not secret: `random` (seeded from the OS, and again in every forked worker) needs
    no syscall per id, where `secrets` makes one, and each syscall lets another thread take the GIL."""
    return f"{random.getrandbits(8 * nbytes):0{2 * nbytes}x}"


def new_message_id() -> str:
    return "msg_" + random_hex()


def signature_for(thinking: str) -> str:
    """A stand-in signature: clients expect one and echo it back; upstreams never see it."""
    return "cpxsig_" + hashlib.sha256(thinking.encode()).hexdigest()[:32]


def map_finish_reason(reason: str | None, *, saw_tool_calls: bool = False) -> str:
    """Anthropic stop_reason for an upstream finish_reason.

    Tool calls make it `tool_use` whatever a plain "stop" says (Gemini, older Ollama), but a
    cut-off (`max_tokens`) or a refusal wins: a truncated tool call must not look runnable.
    """
    mapped = FINISH_REASONS.get(reason.lower()) if reason else None
    if mapped is None and reason and ("filter" in reason.lower() or "safety" in reason.lower()):
        mapped = "refusal"
    if mapped in ("max_tokens", "refusal"):
        return mapped
    if saw_tool_calls:
        return "tool_use"
    return mapped or "end_turn"


def matched_stop(choice: dict[str, Any], stop_sequences: tuple[str, ...]) -> str | None:
    """The stop sequence that ended generation, where the upstream names it."""
    for key in ("stop_reason", "matched_stop", "stop_sequence"):
        value = choice.get(key)
        if isinstance(value, str) and value in stop_sequences:
            return value
    return None


def find_usage(chunk: dict[str, Any]) -> dict[str, Any] | None:
    """Usage wherever a provider put it: top level, x_groq, or inside the choice."""
    usage = chunk.get("usage")
    if isinstance(usage, dict) and usage:
        return usage
    groq = chunk.get("x_groq")
    if isinstance(groq, dict) and isinstance(groq.get("usage"), dict):
        return groq["usage"]
    for choice in chunk.get("choices") or []:
        if isinstance(choice, dict) and isinstance(choice.get("usage"), dict):
            return choice["usage"]
    return None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


# Where each provider reports prompt-cache reads and writes (first non-zero wins):
#   prompt_tokens_details.cached_tokens     OpenAI, xAI, Groq, Mistral, Fireworks, OpenRouter, Gemini compat
#   input_tokens_details.cached_tokens      OpenAI Responses-shaped usage
#   prompt_cache_hit_tokens (+ _miss_)      DeepSeek (hit + miss = prompt_tokens)
#   cached_tokens (top level)               Moonshot/Kimi
#   cached_prompt_text_tokens               xAI SDK-shaped usage
#   cached_content_token_count              Gemini usage metadata passed through by gateways
#   cache_read_input_tokens                 Anthropic passthrough, LiteLLM-style gateways
#   …details.cache_write_tokens             OpenRouter (Anthropic models), OpenAI Responses
#   cache_creation_input_tokens             Anthropic passthrough, LiteLLM-style gateways
_READS = ("prompt_cache_hit_tokens", "cached_tokens", "cached_prompt_text_tokens", "cached_content_token_count",
          "cachedContentTokenCount", "cache_read_input_tokens")
_WRITES = ("cache_write_tokens", "cache_creation_input_tokens")
_DETAILS = ("prompt_tokens_details", "input_tokens_details")


def _first(usage: dict[str, Any], keys: tuple[str, ...], nested: str) -> int:
    for name in _DETAILS:
        details = usage.get(name)
        if isinstance(details, dict) and (value := _int(details.get(nested))):
            return value
    for key in keys:
        if value := _int(usage.get(key)):
            return value
    return 0


def convert_usage(usage: dict[str, Any] | None, dialect: Dialect) -> dict[str, int] | None:
    """Anthropic usage from any provider's: cache reads and writes in their own fields and
    `input_tokens` without either (OpenAI-style prompt counts include both)."""
    if not usage:
        return None
    read = _first(usage, _READS, "cached_tokens")
    write = _first(usage, _WRITES, "cache_write_tokens")
    if "prompt_tokens" in usage:
        prompt = _int(usage.get("prompt_tokens"))
    elif "prompt_cache_miss_tokens" in usage:  # DeepSeek without a prompt count: the misses are the rest
        prompt = _int(usage.get("prompt_cache_miss_tokens")) + read + write
    elif "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:
        prompt = _int(usage.get("input_tokens")) + read + write  # Anthropic-shaped: already exclusive
    else:
        prompt = _int(usage.get("input_tokens"))
    completion = _int(usage.get("completion_tokens", usage.get("output_tokens")))
    if dialect.reasoning_tokens_separate:
        out_details = usage.get("completion_tokens_details") or {}
        if isinstance(out_details, dict):
            completion += _int(out_details.get("reasoning_tokens"))
    return {
        "input_tokens": max(prompt - read - write, 0),
        "output_tokens": completion,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
    }


def reasoning_text(delta: dict[str, Any]) -> str:
    """Reasoning text of a delta or message; each provider's field, never counted twice."""
    for key in ("reasoning_content", "reasoning"):
        value = delta.get(key)
        if isinstance(value, str) and value:
            return value
    details = delta.get("reasoning_details")
    if isinstance(details, list):
        texts = []
        for item in details:
            if isinstance(item, dict):
                value = item.get("text") or item.get("summary")
                if isinstance(value, str):
                    texts.append(value)
        return "".join(texts)
    return ""


def content_parts(content: Any) -> list[tuple[str, str]]:
    """Content as (kind, text) pieces; Mistral sends arrays with "thinking" parts."""
    if isinstance(content, str):
        return [("text", content)] if content else []
    out: list[tuple[str, str]] = []
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "thinking":
                inner = part.get("thinking")
                if isinstance(inner, list):
                    text = "".join(str(p.get("text", "")) for p in inner if isinstance(p, dict))
                else:
                    text = str(inner or "")
                if text:
                    out.append(("thinking", text))
            elif part.get("type") == "text" and part.get("text"):
                out.append(("text", str(part["text"])))
    return out


def split_think_tags(text: str) -> list[tuple[str, str]]:
    """Whole-text split of inline <think> sections (the streaming path has its own)."""
    out: list[tuple[str, str]] = []
    pattern = re.compile(r"<(think|thought)>(.*?)(?:</\1>|$)", re.DOTALL)
    pos = 0
    for match in pattern.finditer(text):
        if match.start() > pos:
            out.append(("text", _after_think(text[pos : match.start()], pos)))
        if match.group(2).strip():
            out.append(("thinking", match.group(2)))
        pos = match.end()
    if pos < len(text):
        out.append(("text", _after_think(text[pos:], pos)))
    return [(k, t) for k, t in out if t and (k == "thinking" or t.strip())]


def _after_think(text: str, pos: int) -> str:
    """Text that follows a think section starts at its first non-space (as when streaming)."""
    return text.lstrip() if pos else text


def repair_json(raw: str) -> dict[str, Any] | None:
    """Arguments as a JSON object, repairing what models commonly get wrong; None if hopeless."""
    text = raw.strip()
    if not text:
        return {}
    candidates = [text]
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.DOTALL)
    if fenced:
        candidates.append(fenced.group(1))
    closed = _close_brackets(text)
    candidates.append(closed)
    candidates.append(re.sub(r",\s*([}\]])", r"\1", text))
    candidates.append(re.sub(r",\s*([}\]])", r"\1", closed))  # truncated right after a comma
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
        if isinstance(value, str):
            nested = repair_json(value)
            if nested is not None:
                return nested
    decoder = json.JSONDecoder()
    try:
        value, _end = decoder.raw_decode(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def closing_suffix(text: str) -> str | None:
    """The characters that would close a truncated JSON object (None if it is not one)."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and (not stack or stack.pop() != ch):
            return None
    if not stack and not in_string:
        return ""
    return ('"' if in_string else "") + "".join(reversed(stack))


def _close_brackets(text: str) -> str:
    suffix = closing_suffix(text)
    return text + suffix if suffix else text


def parse_arguments(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if arguments is None:
        return {}
    repaired = repair_json(str(arguments))
    if repaired is None:
        # Surfaced to the model: the tool rejects it and the model can try again.
        return {"_invalid_json_arguments": str(arguments)}
    return repaired


def structured_text(arguments: Any, wrapped: bool) -> str:
    """The structured-output tool's arguments as the answer's JSON text."""
    if not wrapped and isinstance(arguments, str):
        return arguments
    value = parse_arguments(arguments)
    if wrapped and STRUCTURED_WRAP_KEY in value:
        return json.dumps(value[STRUCTURED_WRAP_KEY], ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)


def openai_to_anthropic(response: dict[str, Any], context: RequestContext, message_id: str | None = None) -> dict[str, Any]:
    """A non-streaming completion → an Anthropic message."""
    dialect = context.dialect
    message_id = message_id or new_message_id()
    choices = response.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []

    thinking = reasoning_text(message)
    pieces = content_parts(message.get("content"))
    if dialect.think_tags:
        pieces = [p for kind, text in pieces for p in (split_think_tags(text) if kind == "text" else [(kind, text)])]
    if thinking:
        pieces.insert(0, ("thinking", thinking))
    for kind, text in pieces:
        if content and content[-1]["type"] == kind:
            content[-1][kind] += text
        elif kind == "thinking":
            content.append({"type": "thinking", "thinking": text, "signature": ""})
        else:
            content.append({"type": "text", "text": text})
    for block in content:
        if block["type"] == "thinking":
            block["signature"] = signature_for(block["thinking"])

    calls = [c for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    if not calls and isinstance(message.get("function_call"), dict):
        calls = [{"id": "", "function": message["function_call"]}]
    answer = [c for c in calls if context.structured_tool and (c.get("function") or {}).get("name") == context.structured_tool]
    if answer:  # the forced structured-output tool: its arguments are the answer text
        calls = [c for c in calls if c not in answer]
        text = structured_text((answer[0].get("function") or {}).get("arguments"), context.structured_wrapped)
        if content and content[-1]["type"] == "text":
            content[-1]["text"] += text
        else:
            content.append({"type": "text", "text": text})
    for n, call in enumerate(calls):
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        call_id = str(call.get("id") or f"call_{n}_{message_id[-8:]}")
        content.append(
            {
                "type": "tool_use",
                "id": to_anthropic_id(call_id),
                "name": context.tool_names.get(name, name),
                "input": parse_arguments(function.get("arguments")),
            }
        )

    reason = choice.get("finish_reason")
    stop_sequence = matched_stop(choice, context.stop_sequences)
    stop_reason = map_finish_reason(reason, saw_tool_calls=bool(calls))
    if answer and not calls and stop_reason == "tool_use":
        stop_reason = "end_turn"
    if stop_sequence and stop_reason == "end_turn":
        stop_reason = "stop_sequence"
    usage = convert_usage(find_usage(response), dialect) or {
        "input_tokens": context.prompt_tokens(),
        "output_tokens": sum(len(json.dumps(b)) for b in content) // 4,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": context.client_model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }
