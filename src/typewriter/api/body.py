"""Reading a JSON body with the contract's errors: 413, 415, 400, then 422 per field.

Done by hand rather than by FastAPI's body parameter because the contract
separates what the framework lumps together: a wrong content type (415),
JSON that does not parse (400) and fields that are wrong (422, naming them),
and it bounds the body before reading it all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from typewriter.errors import (
    BadRequest,
    InvalidField,
    MessageTooLong,
    PayloadTooLarge,
    UnsupportedMediaType,
)

__all__ = ["ImageBodies", "body_schema", "field_errors", "read_json", "too_long_fields"]

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ImageBodies:
    """How far past ``max_body_bytes`` a body that carries images may go, and how to tell.

    A body is read on past ``max_body_bytes`` (up to ``max_bytes``) only when its first
    ``max_body_bytes`` hold ``marker``, the JSON key its images come under: the bytes
    before the first image must fit the ordinary limit, so a body of text alone is
    refused as soon as it passes it, as before. Once parsed, and before any field is
    validated, the body less its images' bytes (``image_bytes`` of the parsed JSON:
    the ``data:`` URIs it carries) must fit ``max_body_bytes`` too: an image earns
    room for itself, never for text or tools beside it, and the marker quoted in a
    text earns nothing.
    """

    max_bytes: int
    marker: bytes
    image_bytes: Callable[[Any], int]


async def read_json(
    request: Request, model: type[M], max_bytes: int, images: ImageBodies | None = None
) -> M:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type {content_type or '(none)'!r} is not accepted: "
            "send the body as JSON with 'Content-Type: application/json'",
        )
    body = await _read_bounded(request, max_bytes, images)
    try:
        value = json.loads(body)
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply", code="invalid_json") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit integer
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if len(body) > max_bytes:  # read on for images (``ImageBodies``): they alone may pass it
        besides = len(body) - (images.image_bytes(value) if images is not None else 0)
        if besides > max_bytes:
            raise PayloadTooLarge(
                f"the body has {besides} bytes besides its images; the limit is {max_bytes}"
            )
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise InvalidField.of(field_errors(errors)) from None


async def _read_bounded(request: Request, max_bytes: int, images: ImageBodies | None) -> bytes:
    ceiling = max(max_bytes, images.max_bytes) if images is not None else max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > ceiling:
        raise PayloadTooLarge(
            f"the body has {declared} bytes; the limit is {ceiling}"
            + (" (max_image_bytes, for a body with images)" if ceiling > max_bytes else "")
        )
    chunks: list[bytes] = []
    size = 0
    marked = False
    async for chunk in request.stream():
        size += len(chunk)
        chunks.append(chunk)
        if size <= max_bytes:
            continue
        if not marked:  # once, on passing the ordinary limit: the prefix must name an image
            marked = images is not None and images.marker in b"".join(chunks)[: max_bytes + 1]
            if not marked:
                raise PayloadTooLarge(f"the body is larger than the limit of {max_bytes} bytes")
        if size > ceiling:
            raise PayloadTooLarge(
                f"the body is larger than the limit of {ceiling} bytes"
                " (max_image_bytes, for a body with images)"
            )
    return b"".join(chunks)


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic's (or FastAPI's) errors as ``{"field": "options.temperature", "message": ...}``."""
    return [
        {
            "field": ".".join(str(part) for part in error.get("loc", ())) or "body",
            "message": str(error.get("msg", "invalid")),
        }
        for error in errors
    ]


def too_long_fields(exc: MessageTooLong, field_of: Callable[[int], str]) -> InvalidField:
    """``max_message_chars`` exceeded, with each message named by its request field."""
    return InvalidField.of(
        [
            {
                "field": field_of(i),
                "message": f"{n} characters; the limit is {exc.limit} (max_message_chars)",
            }
            for i, n in exc.lengths.items()
        ]
    )


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON body that ``read_json`` parses by hand.

    Pydantic's ``$defs`` are inlined: under ``openapi_extra`` their ``#/$defs/…``
    references would point at the root of the OpenAPI document, where they do
    not exist, and clients generating requests from the schema send nothing.
    """
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline(schema)}},
        }
    }
