"""Multipart form bodies parsed in memory, with a size limit enforced while the body streams in.

Starlette's own form parser spools uploads over 1 MB to temporary files; the service writes nothing,
so the body is read (at most ``limit`` bytes, else :class:`TooLarge`) and parsed here with
python-multipart's streaming parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import first_line

FORM_OVERHEAD = 64 * 1024  # boundaries, part headers and small fields around the one file
DETAIL_CHARS = 300  # the most characters of an error's first line that a 4xx JSON ``detail`` carries


class TooLarge(ValueError):
    """The request body is over the limit (HTTP 413)."""


class BadForm(ValueError):
    """Not a well-formed multipart/form-data body (HTTP 4xx)."""


class ClientGone(Exception):
    """The client disconnected before its body was read (one log line; nobody is there to answer)."""


@dataclass
class Part:
    """One form field: its name, the file name when it is a file, and its bytes."""

    name: str
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


async def read_body(request, limit: int) -> bytes:
    """The request body, refusing (:class:`TooLarge`) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {int(declared)} bytes is over the {limit}-byte limit")
    from starlette.requests import ClientDisconnect

    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise TooLarge(f"request body is over the {limit}-byte limit")
    except ClientDisconnect:
        raise ClientGone() from None
    return bytes(body)


async def read_form(request, limit: int, parse=None):
    """``parse`` (:func:`parse_parts`, the default, or :func:`parse_form`) of the request's body of at most
    ``limit`` bytes (:func:`read_body`); :class:`TooLarge` as HTTP 413, :class:`BadForm` as 422, one line each."""
    from fastapi import HTTPException

    try:
        return (parse or parse_parts)(await read_body(request, limit), request.headers.get("content-type"))
    except TooLarge as exc:
        raise HTTPException(413, first_line(exc, DETAIL_CHARS)) from None
    except BadForm as exc:
        raise HTTPException(422, first_line(exc, DETAIL_CHARS)) from None


def parse_form(body: bytes, content_type: str | None) -> dict[str, Part]:
    """Fields of a multipart/form-data ``body`` by name (the first of each name)."""
    fields: dict[str, Part] = {}
    for part in parse_parts(body, content_type):
        fields.setdefault(part.name, part)
    return fields


def parse_parts(body: bytes, content_type: str | None) -> list[Part]:
    """Every field of a multipart/form-data ``body``, in order (several files of one name included)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise BadForm("expected a multipart/form-data body with a boundary (a form with an `image` file field)")
    parts: list[Part] = []
    state = {"field": b"", "value": b"", "headers": {}}

    def on_part_begin():
        state["headers"] = {}

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        parts.append(Part(name, None if filename is None else filename.decode("utf-8", "replace")))

    def on_part_data(data, start, end):
        if parts:
            parts[-1].data += data[start:end]

    callbacks = {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                 "on_header_value": on_header_value, "on_header_end": on_header_end,
                 "on_headers_finished": on_headers_finished, "on_part_data": on_part_data}
    try:  # the parser refuses some boundaries (over 256 characters) as it is built
        parser = MultipartParser(params[b"boundary"], callbacks)
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # noqa: BLE001 - the parser's errors are all "malformed body"
        raise BadForm(f"malformed multipart body: {first_line(exc, DETAIL_CHARS)}") from None
    return parts
