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


class OutputConfig(_Open):
    effort = fields.String(allow_none=True, validate=validate.OneOf(("low", "medium", "high", "xhigh", "max")))
    format = fields.Dict(allow_none=True)


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
    schema = COUNT_TOKENS_SCHEMA if count_tokens else MESSAGES_SCHEMA
    return flatten_errors(schema.validate(body))
