"""Downloads that go out chunk by chunk, whichever server runs the portal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header


def streamed(request, chunks: Iterator[bytes]) -> Iterator[bytes] | AsyncIterator[bytes]:
    """``chunks`` as the server wants them: under ASGI an async iterator, else as they are.

    Django serves a *sync* iterator under ASGI by reading it whole into a
    list first; a 2 GiB download must go out chunk by chunk instead.
    """
    if not isinstance(request, ASGIRequest):
        return chunks

    async def each():
        take = sync_to_async(next, thread_sensitive=False)
        try:
            while (chunk := await take(chunks, None)) is not None:
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                await sync_to_async(close, thread_sensitive=False)()

    return each()


def attachment(
    request, chunks: Iterator[bytes], *, name: str, content_type: str, size: int | None = None
) -> StreamingHttpResponse:
    """A streamed download of ``chunks`` saved as ``name``."""
    response = StreamingHttpResponse(streamed(request, chunks), content_type=content_type)
    if size is not None:
        response["Content-Length"] = str(size)
    response["Content-Disposition"] = content_disposition_header(True, name)
    return response
