"""Attachments: the images of a question, stored beside its message.

Their bytes are read in two places only: when the model needs them (a history
going to an assistant that accepts images) and when their owner fetches one
(``GET /v1/attachments/{id}``). Everything else (a conversation's messages) reads
their metadata: id, type and size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.errors import NotFound
from typewriter.ids import new_id
from typewriter.images import Image
from typewriter.messages import ChatMessage, ContentPart
from typewriter.store.records import Attachment
from typewriter.store.schema import attachments, messages

__all__ = [
    "PLACEHOLDER",
    "attachments_of",
    "conversation_attachments",
    "copy_attachments",
    "insert_attachments",
    "owned_attachment",
    "with_images",
    "with_image_data",
]

PLACEHOLDER = "attachment:"
"""The url of an image part whose bytes are not read yet: ``attachment:{id}``."""

_META = (
    attachments.c.id,
    attachments.c.message_id,
    attachments.c.media_type,
    attachments.c.size,
)


async def insert_attachments(
    db: AsyncConnection, message_id: str, owner: str, images: Sequence[Image], now: float
) -> tuple[Attachment, ...]:
    stored = []
    for position, image in enumerate(images):
        attachment = Attachment(new_id("att"), message_id, image.media_type, len(image.data))
        await db.execute(
            attachments.insert().values(
                id=attachment.id,
                message_id=message_id,
                owner=owner,
                position=position,
                media_type=image.media_type,
                size=attachment.size,
                data=image.data,
                created_at=now,
            )
        )
        stored.append(attachment)
    return tuple(stored)


async def copy_attachments(
    db: AsyncConnection, source_id: str, message_id: str, now: float
) -> None:
    """Give ``message_id`` the images of ``source_id`` (an edited question keeps them), as
    rows of its own: either question can go without touching the other's."""
    query = sa.select(
        attachments.c.owner,
        attachments.c.position,
        attachments.c.media_type,
        attachments.c.size,
        attachments.c.data,
    ).where(attachments.c.message_id == source_id)
    for row in (await db.execute(query.order_by(attachments.c.position))).all():
        await db.execute(
            attachments.insert().values(
                id=new_id("att"), message_id=message_id, created_at=now, **row._asdict()
            )
        )


async def conversation_attachments(
    db: AsyncConnection, conversation_id: str
) -> dict[str, tuple[Attachment, ...]]:
    """Each message's attachments (metadata only), by message id, in their order."""
    query = (
        sa.select(*_META)
        .join(messages, messages.c.id == attachments.c.message_id)
        .where(messages.c.conversation_id == conversation_id)
        .order_by(attachments.c.message_id, attachments.c.position)
    )
    found: dict[str, list[Attachment]] = {}
    for row in (await db.execute(query)).all():
        found.setdefault(row.message_id, []).append(
            Attachment(row.id, row.message_id, row.media_type, row.size)
        )
    return {message_id: tuple(listed) for message_id, listed in found.items()}


async def attachments_of(db: AsyncConnection, message_id: str) -> tuple[Attachment, ...]:
    query = (
        sa.select(*_META)
        .where(attachments.c.message_id == message_id)
        .order_by(attachments.c.position)
    )
    rows = (await db.execute(query)).all()
    return tuple(Attachment(r.id, r.message_id, r.media_type, r.size) for r in rows)


async def owned_attachment(db: AsyncConnection, owner: str, attachment_id: str) -> Image:
    """The owner's image; another user's is ``NotFound``, as one that does not exist."""
    query = sa.select(attachments.c.media_type, attachments.c.data).where(
        attachments.c.id == attachment_id, attachments.c.owner == owner
    )
    row = (await db.execute(query)).first()
    if row is None:
        raise NotFound(f"no attachment {attachment_id[:100]!r}", code="attachment_not_found")
    return Image(row.media_type, bytes(row.data))


def with_images(message: ChatMessage, stored: Iterable[Attachment]) -> ChatMessage:
    """The message with its images after its text, each a placeholder until
    :func:`with_image_data` reads it: the budget decides first which messages go."""
    images = tuple(ContentPart("image_url", url=PLACEHOLDER + a.id) for a in stored)
    if not images:
        return message
    return ChatMessage(
        message.role, message.content, (ContentPart("text", message.content), *images)
    )


async def with_image_data(
    db: AsyncConnection, history: Sequence[ChatMessage], budget: int
) -> tuple[ChatMessage, ...]:
    """The history with its placeholders replaced by their images as ``data:`` URIs, the
    newest first while their bytes fit ``budget``; the older ones are left out (their
    text stays), so a conversation of many photos never loads them all at once."""
    placed = [
        part.url.removeprefix(PLACEHOLDER)
        for message in reversed(history)
        for part in reversed(message.images)
        if part.url.startswith(PLACEHOLDER)
    ]
    if not placed:
        return tuple(history)
    sizes = sa.select(attachments.c.id, attachments.c.size).where(attachments.c.id.in_(placed))
    size_of = {r.id: r.size for r in (await db.execute(sizes)).all()}
    wanted, used = [], 0
    for attachment_id in placed:
        used += size_of.get(attachment_id, 0)
        if used > budget:
            break
        wanted.append(attachment_id)
    query = sa.select(attachments.c.id, attachments.c.media_type, attachments.c.data).where(
        attachments.c.id.in_(wanted)
    )
    uris = {r.id: Image(r.media_type, bytes(r.data)).uri() for r in (await db.execute(query)).all()}

    def filled(part: ContentPart) -> ContentPart | None:
        if not part.url.startswith(PLACEHOLDER):
            return part
        uri = uris.get(part.url.removeprefix(PLACEHOLDER))
        return ContentPart("image_url", url=uri) if uri is not None else None

    result = []
    for message in history:
        if not message.parts:
            result.append(message)
            continue
        parts = tuple(p for p in (filled(part) for part in message.parts) if p is not None)
        has_image = any(p.type == "image_url" for p in parts)  # else its text goes alone
        result.append(ChatMessage(message.role, message.content, parts if has_image else ()))
    return tuple(result)
