"""What a valid Messages request is, as marshmallow schemas.

Validation checks shape and types and names the failing field path
(`messages.3.content.0.type`); it deliberately does not deep-validate tool JSON schemas,
and it keeps unknown keys (Claude Code adds new ones often) for the translator to decide.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


class _Open(Schema):
    class Meta:
        unknown = INCLUDE


class StrictBoolean(fields.Boolean):
    """JSON true/false only: the body is forwarded as sent, so "false" must not pass as a boolean."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid", input=value)


class StrictFloat(fields.Float):
    """A JSON number only (not "0.5"): the body is forwarded as sent, and providers reject strings."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, str):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class ImageSource(_Open):
    type = fields.String(required=True, validate=validate.OneOf(("base64", "url", "file")))
    media_type = fields.String(validate=validate.OneOf(IMAGE_MEDIA_TYPES))
    data = fields.String()
    url = fields.String()
    file_id = fields.String()

    @validates_schema
    def _by_type(self, data: dict[str, Any], **_: Any) -> None:
        _require_for_source(data, {"base64": ("media_type", "data"), "url": ("url",), "file": ("file_id",)})


class DocumentSource(_Open):
    type = fields.String(required=True, validate=validate.OneOf(("base64", "text", "url", "content", "file")))
    media_type = fields.String()
    data = fields.String()
    url = fields.String()
    content = fields.Raw()
    file_id = fields.String()

    @validates_schema
    def _by_type(self, data: dict[str, Any], **_: Any) -> None:
        _require_for_source(
            data,
            {
                "base64": ("media_type", "data"),
                "text": ("data",),
                "url": ("url",),
                "content": ("content",),
                "file": ("file_id",),
            },
        )


def _require_for_source(data: dict[str, Any], needs: dict[str, tuple[str, ...]]) -> None:
    missing = {k: ["Missing data for required field."] for k in needs.get(data.get("type", ""), ()) if k not in data}
    if missing:
        raise ValidationError(missing)


class TextBlock(_Open):
    type = fields.String(required=True)
    text = fields.String(required=True)


class ImageBlock(_Open):
    type = fields.String(required=True)
    source = fields.Nested(ImageSource, required=True)


class DocumentBlock(_Open):
    type = fields.String(required=True)
    source = fields.Nested(DocumentSource, required=True)
    title = fields.String(allow_none=True)


class ToolUseBlock(_Open):
    type = fields.String(required=True)
    id = fields.String(required=True, validate=validate.Length(min=1))
    name = fields.String(required=True, validate=validate.Length(min=1))
    input = fields.Dict(required=True)


class ThinkingBlock(_Open):
    type = fields.String(required=True)
    thinking = fields.String(required=True)
    signature = fields.String(allow_none=True)


class RedactedThinkingBlock(_Open):
    type = fields.String(required=True)
    data = fields.String(required=True)


class SearchResultBlock(_Open):
    type = fields.String(required=True)
    source = fields.String(required=True)
    title = fields.String(required=True)
    content = fields.List(fields.Dict(), required=True)


class AnyBlock(_Open):
    type = fields.String(required=True)


class ContentList(fields.Field):
    """A list of content blocks, each validated by the schema for its `type`."""

    def __init__(self, block_schemas: dict[str, Schema], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.block_schemas = block_schemas

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, list):
            raise ValidationError("Must be a list of content blocks.")
        errors: dict[int, Any] = {}
        for index, block in enumerate(value):
            if not isinstance(block, dict):
                errors[index] = ["Each content block must be an object."]
                continue
            kind = block.get("type")
            if not isinstance(kind, str):
                errors[index] = {"type": ["Missing or invalid content block type."]}
                continue
            schema = self.block_schemas.get(kind)
            if schema is None:
                allowed = ", ".join(sorted(self.block_schemas))
                errors[index] = {"type": [f"Unknown content block type {kind!r} (expected one of: {allowed})."]}
                continue
            problems = schema.validate(block)
            if problems:
                errors[index] = problems
        if errors:
            raise ValidationError(errors)
        return value


class StringOrBlocks(ContentList):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValidationError("Must be a string or a list of content blocks.")
        return super()._deserialize(value, attr, data, **kwargs)


_TOOL_RESULT_BLOCKS: dict[str, Schema] = {
    "text": TextBlock(),
    "image": ImageBlock(),
    "document": DocumentBlock(),
    "search_result": SearchResultBlock(),
    "tool_reference": AnyBlock(),
}


class ToolResultBlock(_Open):
    type = fields.String(required=True)
    tool_use_id = fields.String(required=True, validate=validate.Length(min=1))
    content = StringOrBlocks(_TOOL_RESULT_BLOCKS, allow_none=True)
    is_error = StrictBoolean(allow_none=True)


SERVER_BLOCKS = (
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "container_upload",
    "mcp_tool_use",
    "mcp_tool_result",
)

CONTENT_BLOCKS: dict[str, Schema] = {
    "text": TextBlock(),
    "image": ImageBlock(),
    "document": DocumentBlock(),
    "tool_use": ToolUseBlock(),
    "tool_result": ToolResultBlock(),
    "thinking": ThinkingBlock(),
    "redacted_thinking": RedactedThinkingBlock(),
    "search_result": SearchResultBlock(),
    **{name: AnyBlock() for name in SERVER_BLOCKS},
}


class Message(_Open):
    role = fields.String(required=True, validate=validate.OneOf(("user", "assistant", "system")))
    content = StringOrBlocks(CONTENT_BLOCKS, required=True)


class Tool(_Open):
    name = fields.String(required=True, validate=validate.Length(min=1, max=256))
    description = fields.String(allow_none=True)
    input_schema = fields.Dict()
    type = fields.String(allow_none=True)

    @validates_schema
    def _custom_needs_schema(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("type") in (None, "custom") and "input_schema" not in data:
            raise ValidationError({"input_schema": ["Missing data for required field."]})


class ToolChoice(_Open):
    type = fields.String(required=True, validate=validate.OneOf(("auto", "any", "tool", "none")))
    name = fields.String()
    disable_parallel_tool_use = StrictBoolean()

    @validates_schema
    def _tool_needs_name(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("type") == "tool" and not data.get("name"):
            raise ValidationError({"name": ["Required when type is 'tool'."]})


class Thinking(_Open):
    type = fields.String(required=True, validate=validate.OneOf(("enabled", "disabled", "adaptive")))
    budget_tokens = fields.Integer(strict=True, validate=validate.Range(min=1024))

    @validates_schema
    def _enabled_needs_budget(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("type") == "enabled" and "budget_tokens" not in data:
            raise ValidationError({"budget_tokens": ["Required when type is 'enabled'."]})


class OutputFormat(_Open):
    """Structured outputs: a JSON schema the answer must match (the only kind Anthropic has)."""

    type = fields.String(required=True, validate=validate.OneOf(("json_schema",)))
    schema = fields.Dict(required=True)


class OutputConfig(_Open):
    effort = fields.String(allow_none=True, validate=validate.OneOf(("low", "medium", "high", "xhigh", "max")))
    format = fields.Nested(OutputFormat, allow_none=True)


class Metadata(_Open):
    user_id = fields.String(allow_none=True)


class CountTokensRequest(_Open):
    model = fields.String(required=True, validate=validate.Length(min=1))
    messages = fields.List(fields.Nested(Message), required=True, validate=validate.Length(min=1))
    system = StringOrBlocks({"text": TextBlock()}, allow_none=True)
    tools = fields.List(fields.Nested(Tool), allow_none=True)
    tool_choice = fields.Nested(ToolChoice, allow_none=True)
    thinking = fields.Nested(Thinking, allow_none=True)
    output_config = fields.Nested(OutputConfig, allow_none=True)


class MessagesRequest(CountTokensRequest):
    max_tokens = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    stream = StrictBoolean(allow_none=True)
    stop_sequences = fields.List(fields.String(), allow_none=True)
    temperature = StrictFloat(allow_none=True, allow_nan=False, validate=validate.Range(min=0, max=1))
    top_p = StrictFloat(allow_none=True, allow_nan=False, validate=validate.Range(min=0, max=1))
    top_k = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=0))
    metadata = fields.Nested(Metadata, allow_none=True)


MESSAGES_SCHEMA = MessagesRequest()
COUNT_TOKENS_SCHEMA = CountTokensRequest()


def flatten_errors(errors: Any, prefix: str = "") -> list[str]:
    """marshmallow's nested error dict → ["messages.3.content.0.type: …", …]."""
    if isinstance(errors, dict):
        out: list[str] = []
        for key, value in errors.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == "_schema":
                path = prefix or "body"
            out.extend(flatten_errors(value, path))
        return out
    if isinstance(errors, list):
        if all(isinstance(e, str) for e in errors):
            return [f"{prefix}: {' '.join(errors)}" if prefix else " ".join(errors)]
        out = []
        for item in errors:
            out.extend(flatten_errors(item, prefix))
        return out
    return [f"{prefix}: {errors}"]


def validate_messages_request(body: Any, *, count_tokens: bool = False) -> list[str]:
    """Problems with a decoded request body, as readable "path: message" strings."""
    if not isinstance(body, dict):
        return ["body: The request body must be a JSON object."]
    if _plainly_valid(body, count_tokens):
        return []
    schema = COUNT_TOKENS_SCHEMA if count_tokens else MESSAGES_SCHEMA
    return flatten_errors(schema.validate(body))


# -- the fast path -------------------------------------------------------------------------------
# marshmallow costs ~40 µs per nested object, a third of the proxy's own time on a Claude Code
# request. The checks below accept only requests in plainly valid, common shapes — every check is
# at least as strict as the schema's — and answer "not sure" for anything else, which then gets
# the full schema and its exact messages. tests/test_schemas.py checks the two never disagree.

_ROLES = ("user", "assistant", "system")  # tuples: `in` must not hash a list
_EFFORTS = ("low", "medium", "high", "xhigh", "max")
_THINKING = ("enabled", "disabled", "adaptive")


def _str(value: Any, *, empty: bool = True) -> bool:
    return isinstance(value, str) and (empty or value != "")


def _opt(block: dict[str, Any], key: str, check: Any) -> bool:
    """Absent, null, or passing `check` (only for fields the schema declares allow_none)."""
    value = block.get(key)
    return value is None or check(value)


def _int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _unit(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _text_block(block: dict[str, Any]) -> bool:
    return block.get("type") == "text" and _str(block.get("text"))


def _absent_or(block: dict[str, Any], key: str, check: Any) -> bool:
    """Absent, or passing `check` (for fields the schema does not let be null)."""
    return key not in block or check(block[key])


def _image_source(source: Any) -> bool:
    if not isinstance(source, dict) or source.get("type") not in ("base64", "url"):
        return False
    needed = ("media_type", "data") if source["type"] == "base64" else ("url",)
    return (
        all(key in source for key in needed)
        and _absent_or(source, "media_type", IMAGE_MEDIA_TYPES.__contains__)
        and all(_absent_or(source, key, _str) for key in ("data", "url", "file_id"))
    )


def _document_source(source: Any) -> bool:
    if not isinstance(source, dict) or source.get("type") not in ("base64", "text"):
        return False
    needed = ("media_type", "data") if source["type"] == "base64" else ("data",)
    return (
        all(key in source for key in needed)
        and all(_absent_or(source, key, _str) for key in ("media_type", "data", "url", "file_id"))
        and _absent_or(source, "content", lambda v: v is not None)
    )


def _media_block(block: dict[str, Any]) -> bool:
    """An image or a document (base64, url or text sources: the ones clients send)."""
    kind = block.get("type")
    if kind == "image":
        return _image_source(block.get("source"))
    if kind == "document":
        return _document_source(block.get("source")) and _opt(block, "title", _str)
    return False


def _tool_result_item(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    kind = item.get("type")
    if kind == "text":
        return _str(item.get("text"))
    if kind == "tool_reference":
        return True  # any fields: the schema checks only the type
    return _media_block(item)


def _plain_block(block: Any) -> bool:
    if not isinstance(block, dict):
        return False
    kind = block.get("type")
    if kind == "text":
        return _str(block.get("text"))
    if kind == "tool_use":
        return (
            _str(block.get("id"), empty=False)
            and _str(block.get("name"), empty=False)
            and isinstance(block.get("input"), dict)
        )
    if kind == "tool_result":
        content = block.get("content")
        plain_content = (
            content is None
            or _str(content)
            or (isinstance(content, list) and all(_tool_result_item(b) for b in content))
        )
        return (
            _str(block.get("tool_use_id"), empty=False)
            and plain_content
            and _opt(block, "is_error", lambda v: v is True or v is False)
        )
    if kind == "thinking":
        return _str(block.get("thinking")) and _opt(block, "signature", _str)
    if kind in ("image", "document"):
        return _media_block(block)
    return False  # server blocks, search results, other sources…: the full schema


def _plain_content(content: Any) -> bool:
    return _str(content) or (isinstance(content, list) and all(_plain_block(b) for b in content))


def _plain_tool(tool: Any) -> bool:
    if not isinstance(tool, dict):
        return False
    kind = tool.get("type")
    if "input_schema" in tool:
        schema_ok = isinstance(tool["input_schema"], dict)
    else:  # a server tool ({"type": "web_search_20250305", …}) has none
        schema_ok = isinstance(kind, str) and kind != "custom"
    return (
        schema_ok
        and _str(tool.get("name"))
        and 1 <= len(tool["name"]) <= 256
        and _opt(tool, "description", _str)
        and _opt(tool, "type", _str)
    )


def _plain_tool_choice(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    kind = choice.get("type")
    return (
        (kind in ("auto", "any", "none") or (kind == "tool" and _str(choice.get("name"), empty=False)))
        and _absent_or(choice, "name", _str)
        and _absent_or(choice, "disable_parallel_tool_use", lambda v: v is True or v is False)
    )


def _output_format(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "json_schema" and isinstance(value.get("schema"), dict)


def _plainly_valid(body: dict[str, Any], count_tokens: bool) -> bool:
    messages = body.get("messages")
    if not (_str(body.get("model"), empty=False) and isinstance(messages, list) and messages):
        return False
    if not count_tokens and not _int(body.get("max_tokens"), 1):
        return False
    for message in messages:
        if not (isinstance(message, dict) and message.get("role") in _ROLES and _plain_content(message.get("content"))):
            return False
    system = body.get("system")
    if not (
        system is None
        or _str(system)
        or (isinstance(system, list) and all(isinstance(b, dict) and _text_block(b) for b in system))
    ):
        return False
    tools = body.get("tools")
    if not (tools is None or (isinstance(tools, list) and all(_plain_tool(t) for t in tools))):
        return False
    if not _opt(body, "tool_choice", _plain_tool_choice):
        return False
    thinking = body.get("thinking")
    if thinking is not None and not (
        isinstance(thinking, dict)
        and thinking.get("type") in _THINKING
        and (
            _int(thinking.get("budget_tokens"), 1024)
            if thinking.get("type") == "enabled"
            else "budget_tokens" not in thinking
        )
    ):
        return False
    config = body.get("output_config")
    if config is not None and not (
        isinstance(config, dict)
        and _opt(config, "effort", _EFFORTS.__contains__)
        and _opt(config, "format", _output_format)
    ):
        return False
    if count_tokens:
        return True
    metadata = body.get("metadata")
    return (
        _opt(body, "stream", lambda v: v is True or v is False)
        and _opt(body, "stop_sequences", lambda v: isinstance(v, list) and all(_str(s) for s in v))
        and _opt(body, "temperature", _unit)
        and _opt(body, "top_p", _unit)
        and _opt(body, "top_k", lambda v: _int(v, 0))
        and (metadata is None or (isinstance(metadata, dict) and _opt(metadata, "user_id", _str)))
    )
