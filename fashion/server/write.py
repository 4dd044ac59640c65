"""The write API (issue 28 item 7): off by default, on only with a write token.

- ``POST /api/items`` (multipart: one or more ``image`` files, optional ``label``, ``split`` and metadata
  fields such as ``price=12.5``) → 201 ``{"ids", "duplicates", "failed", "version"}``
- ``DELETE /api/items/{id}`` → ``{"removed": [id], "version"}``
- ``PATCH /api/items/{id}`` (a JSON object of metadata columns) → ``{"id", "columns", "version"}``

Every one needs ``Authorization: Bearer TOKEN``: 401 without it, 403 with another token (compared in
constant time, :func:`hmac.compare_digest` of their SHA-256s); without a token the server registers none
of them (the method is then 405 on the read paths). Photos pass the same size limit and image gate as
photo search (:mod:`.upload`, :func:`fashion.catalog.uploads.store`) and are stored content-addressed
inside the run, never at a path the client names. Each write goes through the catalogue functions the
CLI calls (one new sealed version, under the run's writer lock: 409 when another writer holds it), and
the served run switches to the new version before the answer (:class:`fashion.service.live.LiveService`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from ..errors import ConfigError, FashionError, ImageError, first_line
from .upload import DETAIL_CHARS, FORM_OVERHEAD, TooLarge, read_body, read_form

log = logging.getLogger(__name__)

TOKEN_ENV = "FASHION_WRITE_TOKEN"
MIN_TOKEN = 16
MAX_PHOTOS = 8  # photos in one POST
MAX_FIELD = 1000  # bytes of one text field
MAX_PATCH = 64 * 1024  # bytes of a PATCH body
WRITE_WAIT = 2.0  # seconds a write waits for another writer before 409


def read_token(token_file=None, environ=None) -> str | None:
    """The write token: the first line of ``token_file``, else ``FASHION_WRITE_TOKEN``; None when neither
    is given (writes off). ConfigError (one line) when it is shorter than :data:`MIN_TOKEN` characters."""
    environ = os.environ if environ is None else environ
    if token_file is not None:
        try:
            token, source = Path(token_file).read_text(encoding="utf-8").strip(), str(token_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{token_file}: cannot read the write token ({type(exc).__name__})") from None
    else:
        token, source = (environ.get(TOKEN_ENV) or "").strip(), TOKEN_ENV
        if not token:
            return None
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token):
        raise ConfigError(f"{source}: the write token must be at least {MIN_TOKEN} characters with no spaces "
                          f"(got {len(token)})")
    return token


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def add_write_routes(app: FastAPI, live, token: str, max_upload: int) -> None:
    """Register the write endpoints on ``app`` for the served run ``live`` (a LiveService)."""
    expected = _digest(token)
    run_dir = live.run_dir

    def authorize(request: Request) -> None:
        header = request.headers.get("authorization")
        if not header:
            raise HTTPException(401, "writing needs the server's write token: Authorization: Bearer TOKEN",
                                headers={"WWW-Authenticate": "Bearer"})
        scheme, _, given = header.partition(" ")
        if not hmac.compare_digest(_digest(given.strip()), expected) or scheme.lower() != "bearer":
            raise HTTPException(403, "wrong write token")

    def write(fn, *args, **kwargs):
        from ..catalog.metadata import MetadataError
        from ..catalog.versions import WriterBusy

        try:
            result = fn(*args, **kwargs)
        except WriterBusy as exc:
            raise HTTPException(409, first_line(exc, DETAIL_CHARS)) from None
        except ImageError as exc:
            raise HTTPException(422, first_line(f"{exc.path}: not a usable image: {exc.reason}", DETAIL_CHARS)) from None
        except MetadataError as exc:
            raise HTTPException(422, first_line(exc, DETAIL_CHARS)) from None
        except ConfigError as exc:
            raise HTTPException(404 if "no item with id" in str(exc) else 422, first_line(exc, DETAIL_CHARS)) from None
        except FashionError as exc:
            raise HTTPException(422, first_line(exc, DETAIL_CHARS)) from None
        live.refresh()  # the next request sees the new version
        return result

    def version() -> int:
        return int(live.current.run.info.get("version", 1))

    @app.post("/api/items", status_code=201, dependencies=[Depends(authorize)])
    async def add_items(request: Request) -> dict:
        from ..catalog.uploads import add_photos

        with live.budget.admit():
            parts = await read_form(request, MAX_PHOTOS * max_upload + FORM_OVERHEAD)
            photos = [bytes(p.data) for p in parts if p.name == "image"]
            if not photos:
                raise HTTPException(422, "missing the form's `image` file field (one or more photos)")
            if len(photos) > MAX_PHOTOS:
                raise HTTPException(413, f"{len(photos)} photos in one request; at most {MAX_PHOTOS}")
            big = [len(p) for p in photos if len(p) > max_upload]
            if big:
                raise HTTPException(413, f"photo of {big[0]} bytes is over the {max_upload}-byte limit")
            fields = {}
            for part in parts:
                if part.name != "image" and part.filename is None and part.name not in fields:
                    if len(part.data) > MAX_FIELD:
                        raise HTTPException(413, f"field {part.name[:40]!r} is over {MAX_FIELD} bytes")
                    fields[part.name] = bytes(part.data).decode("utf-8", "replace").strip()
            result = await run_in_threadpool(write, add_photos, run_dir, photos, fields,
                                             max_pixels=live.max_pixels, wait=WRITE_WAIT)
        return {"ids": result.ids, "duplicates": [{"photo": Path(p).name, "of": of} for p, of in result.duplicates],
                "failed": [{"photo": Path(p).name, "reason": r} for p, r in result.failed], "version": version()}

    @app.delete("/api/items/{item_id}", dependencies=[Depends(authorize)])
    def delete_item(item_id: int) -> dict:
        from ..catalog.remove import remove

        result = write(remove, run_dir, ids=[item_id], wait=WRITE_WAIT)
        return {"removed": result.ids, "version": version()}

    @app.patch("/api/items/{item_id}", dependencies=[Depends(authorize)])
    async def patch_item(item_id: int, request: Request) -> dict:
        from ..catalog.uploads import patch_item as patch

        try:
            values = json.loads(await read_body(request, MAX_PATCH))
        except TooLarge as exc:
            raise HTTPException(413, first_line(exc, DETAIL_CHARS)) from None
        except ValueError:
            raise HTTPException(422, "the body must be a JSON object of metadata columns") from None
        if not isinstance(values, dict) or not all(
                isinstance(v, (str, int, float, bool)) or v is None for v in values.values()):
            raise HTTPException(422, "the body must be a JSON object of metadata columns to plain values")
        done = await run_in_threadpool(write, patch, run_dir, item_id, values, wait=WRITE_WAIT)
        return {"id": item_id, "columns": done["columns"], "version": version()}
