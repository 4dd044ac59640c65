"""The HTTP face of :class:`fashion.service.SimilarityService` (FastAPI): the API and the web page.

Contract (README "Explore"; tests/test_server.py):

- ``GET /healthz`` → ``{"status": "ok", "items": N, "model": ..., "index": ...}``
- ``POST /api/search?filter=&text=&colour=`` (multipart: file field ``image``, optional ``k``) → ``{"k",
  "prediction", "results", "filters", "ignored", "colour", "query_colour"}``: only the items the filters and
  words keep are searched; ``colour=same|any|<family>``: a colour mode (:mod:`fashion.service.colourmode`)
- ``GET /api/search?text=&filter=&k=&offset=`` → the items the words match, best first (a classifier run: by
  its score for the category asked; else by id): ``{"total", "offset", "limit", "items", "filters",
  "ignored", "facets"}``
- ``GET /api/items/{id}/neighbors?k=&filter=&text=&colour=`` → the search's shape for a gallery item
- ``GET /api/items?label=&q=&filter=&text=&offset=&limit=&facets=`` → ``{"total", "offset", "limit", "items",
  "filters", "ignored", "facets"}``
- ``GET /api/facets?filter=&text=`` → ``{"facets": [...], "filters", "ignored"}``: label and each metadata column with few values
  (value counts), numbers and dates as min/max, over the items the filters keep

``filter=`` repeats (ANDed) and takes the grammar of :mod:`fashion.filters` (``label=dress``, ``price<100``,
``brand in A,B``); ``text=`` a search box's words (:mod:`fashion.textquery`). A clause that does not parse
or names an unknown column or a bad value is 422 with a one-line ``detail``.
- ``GET /api/labels`` → ``{"labels": [{"label", "count", "precision", "queries"}]}``
- ``GET /api/run`` → the run's headline, metrics, skipped files; ``GET /api/suspects`` → suspect labels and how far to trust them (``trust``: model accuracy, caveat)
- ``GET /images/{id}``, ``GET /thumbs/{id}`` → the item's image / a JPEG thumbnail (kept in memory)
- ``GET /`` and ``/static/…`` → the page (files shipped in the package; no CDN, works offline)

Safety: files are served by integer item id only (through the service's item table and dataset-root
check; ``/images`` sends a file only when it is an image of the kind its name says), every error is a
4xx with a one-line JSON ``detail`` (a malformed request too), uploads are size-limited and decoded by
the same safe opener as the batch path within the service's memory budget (a photo over ``max_pixels``
or with damaged data is 422; no room now is 503 with Retry-After), a request whose Host header is not
allowed is 400 (DNS rebinding), every response carries a Content-Security-Policy that forbids inline
script, and no endpoint writes anything unless the server has a write token (:mod:`.write`: POST, DELETE
and PATCH of ``/api/items``). The served run follows the directory's versions without a restart
(:class:`fashion.service.live.LiveService`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from ..errors import ImageError, first_line
from ..service import MAX_K, MAX_PAGE, ItemNotFound, SimilarityService
from ..service.budget import Busy, Limits
from .listen import LOCAL_HOSTS, host_allowed
from .upload import DETAIL_CHARS, FORM_OVERHEAD, ClientGone, parse_form, read_form

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024
# The page's own files only: no inline script, no remote anything, no plugins, no framing, no forms posted away.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# FastAPI's /docs page (Swagger UI) is its own fixed page that needs its inline bootstrap and CDN bundle;
# it shows no run data. Everything else gets CSP above.
DOCS_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
            "connect-src 'self'; frame-ancestors 'none'")


MAX_FILTERS = 20  # filter= clauses per request
FILTER = Query([], max_length=MAX_FILTERS, description="COLUMN OP VALUE (label=dress, price<100); repeat to AND")
TEXT = Query(None, max_length=500, description="search words (red summer dress, not black)")
COLOUR = Query(None, max_length=20, description="colour mode: same, any, or a colour family (this, but in blue)")


def create_app(service: SimilarityService, max_upload: int = DEFAULT_MAX_UPLOAD,
               allowed_hosts: tuple[str, ...] = LOCAL_HOSTS) -> FastAPI:
    """The FastAPI app over an open ``service``; photos over ``max_upload`` bytes get 413; a request whose
    Host header names none of ``allowed_hosts`` gets 400 ("*": any host; see :mod:`.listen`)."""
    app = FastAPI(title="fashion: similar-clothes search", version="1",  # the run's name, never its path
                  description=f"Run: {service.path.name} ({service.n_items} items)")
    app.state.service = service
    allowed = tuple(h.lower() for h in allowed_hosts)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"detail": first_line(f"{where}: {first.get('msg', 'invalid request')}", DETAIL_CHARS)}, status_code=422)

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy):
        return JSONResponse({"detail": first_line(exc, DETAIL_CHARS)}, status_code=503,
                            headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone):  # one log line, not a traceback
        log.info("%s: the client disconnected during the upload", request.url.path)
        return JSONResponse({"detail": "client disconnected"}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # never a traceback to the client
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    def _call(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ItemNotFound as exc:
            raise HTTPException(404, first_line(exc, DETAIL_CHARS)) from None
        except ImageError as exc:
            raise HTTPException(422, first_line(f"not a usable image: {exc.reason}", DETAIL_CHARS)) from None
        except ValueError as exc:
            raise HTTPException(422, first_line(exc, DETAIL_CHARS)) from None

    @app.get("/healthz")
    async def healthz() -> dict:  # on the event loop: a few dict reads, never queued behind photo work's threads
        return {"status": "ok", **service.describe()}

    @app.post("/api/search")
    async def search(request: Request, k: int | None = Query(None, ge=1, le=MAX_K), filter: list[str] = FILTER,
                     text: str | None = TEXT, colour: str | None = COLOUR) -> JSONResponse:
        with service.budget.admit():  # Busy (503) before a byte of the body is read
            form = await read_form(request, max_upload + FORM_OVERHEAD, parse_form)
            image = form.get("image")
            if image is None:
                raise HTTPException(422, "missing the form's `image` file field")
            if len(image.data) > max_upload:
                raise HTTPException(413, f"photo of {len(image.data)} bytes is over the {max_upload}-byte limit")
            if "k" in form:
                k = _form_k(form["k"].data)
            found = await run_in_threadpool(_call, service.search_image, bytes(image.data), k or 10,
                                            filters=filter, text=text, colour=colour)
        return search_json(found)

    @app.get("/api/search")
    def search_words(text: str | None = TEXT, filter: list[str] = FILTER, k: int = Query(60, ge=1, le=MAX_PAGE),
                     offset: int = Query(0, ge=0)) -> dict:
        return asdict(_call(service.items, offset=offset, limit=k, filters=filter, text=text, facets=True))

    @app.get("/api/items/{item_id}/neighbors")
    def neighbors(item_id: int, k: int = Query(10, ge=1, le=MAX_K), filter: list[str] = FILTER,
                  text: str | None = TEXT, colour: str | None = COLOUR) -> JSONResponse:
        return search_json(_call(service.neighbors_of, item_id, k, filters=filter, text=text, colour=colour))

    @app.get("/api/items")
    def items(label: str | None = Query(None, max_length=200), q: str | None = Query(None, max_length=200),
              offset: int = Query(0, ge=0), limit: int = Query(60, ge=1, le=MAX_PAGE), filter: list[str] = FILTER,
              text: str | None = TEXT, facets: bool = False) -> dict:
        return asdict(_call(service.items, label=label or None, q=q or None, offset=offset, limit=limit,
                            filters=filter, text=text, facets=facets))

    @app.get("/api/facets")
    def facets(filter: list[str] = FILTER, text: str | None = TEXT) -> dict:
        selection = _call(service.filter.select, filter, text)
        return {"facets": service.filter.facets(selection.ids), "filters": selection.applied,
                "ignored": selection.ignored}

    @app.get("/api/items/{item_id}")
    def item(item_id: int) -> dict:
        return asdict(_call(service.item, item_id))

    @app.get("/api/labels")
    def labels() -> dict:
        return {"labels": [asdict(s) for s in service.labels()]}

    @app.get("/api/run")
    def run_info() -> dict:
        from ..report import headline

        metrics = service.metrics
        scalars = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
        return {"path": str(service.path.name), "headline": headline(metrics), "metrics": scalars,
                "timing": metrics.get("timing", {}), "skipped": service.skipped(),
                "n_suspects": len(service.suspects()), **service.describe()}

    @app.get("/api/suspects")
    def suspects() -> dict:
        return {"suspects": [asdict(s) for s in service.suspects()], "trust": service.suspects_trust()}

    @app.get("/images/{item_id}")
    def image(item_id: int):
        path, media = _call(service.image_file_checked, item_id)
        return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/thumbs/{item_id}")
    def thumb(item_id: int):
        data = _call(service.thumbnail, item_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    from .insight import add_insight_routes  # insight (#14): duplicates, map, neighbour suspects

    add_insight_routes(app, service)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, allowed=allowed)
    return app


class Guard:
    """The Host allow-list (400 for a Host header that names none of ``allowed``) and the security headers
    of every response, the 400 included, as one plain ASGI middleware: two ``@app.middleware("http")``
    layers (Starlette's BaseHTTPMiddleware: a task and memory streams per request) cost more CPU than an
    id query's search (benchmarks/README.md, "id queries over HTTP")."""

    def __init__(self, app, allowed: tuple[str, ...]):
        self.app, self.allowed = app, allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        docs = scope["path"] in ("/docs", "/docs/oauth2-redirect", "/redoc")
        extra = [(b"content-security-policy", (DOCS_CSP if docs else CSP).encode()),
                 (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                 (b"cross-origin-resource-policy", b"same-origin")]

        async def send_guarded(message):
            if message["type"] == "http.response.start":
                names = {name for name, _ in extra}
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in names]
                message = {**message, "headers": headers + extra}
            await send(message)

        host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None)
        if not host_allowed(host, self.allowed):
            response = JSONResponse({"detail": "Host header not allowed (fashion serve --allowed-hosts)"},
                                    status_code=400)
            return await response(scope, receive, send_guarded)
        return await self.app(scope, receive, send_guarded)


def search_json(found) -> JSONResponse:
    """The HTTP answer of a photo or id search (a :class:`fashion.service.SearchResponse`), rendered directly:
    FastAPI's jsonable_encoder and asdict's deep copies cost more than the search of an id query (0.34 ms of
    0.38 for 10 matches; benchmarks/README.md); Match is flat, so vars()."""
    return JSONResponse({"k": found.k, "query_id": found.query_id,
                         "prediction": asdict(found.prediction) if found.prediction else None,
                         "results": [vars(m) for m in found.results], "filters": found.filters,
                         "ignored": found.ignored, "colour": found.colour, "query_colour": found.query_colour})


def _form_k(data: bytes) -> int:
    """The form's ``k``: ASCII digits only (``int()`` takes '²' or thousands of digits), 1..MAX_K."""
    text = data.decode("utf-8", "replace").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 4 and 1 <= int(text) <= MAX_K):
        raise HTTPException(422, f"k must be an integer from 1 to {MAX_K}, got {text[:20]!r}")
    return int(text)


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000, max_upload: int = DEFAULT_MAX_UPLOAD,
          allowed_hosts: tuple[str, ...] | None = None, limits: Limits | None = None,
          write_token: str | None = None) -> None:
    """Open the run and serve it with uvicorn until interrupted (``fashion serve RUN_DIR``).

    The port is bound first: a busy one fails at once, before the model loads. ``allowed_hosts``: the
    Host names requests may carry (default: the bound address and localhost, :mod:`.listen`);
    ``limits``: the memory budget of photo searches; ``write_token``: turns on the write API (:mod:`.write`).
    A new version of the run (``fashion add/remove/update``) is served within about a second.
    """
    import uvicorn

    from .listen import bind, default_allowed_hosts, json_error_protocol

    from ..service.budget import return_freed_memory

    sock = bind(host, port)
    try:
        return_freed_memory()  # before the first photo: its buffers go back to the system once freed
        from ..service.live import LiveService

        # warmed before it listens (while the index loads): /healthz says ok only when a photo query is
        # answered at full speed, not before the network's first call at every batch size
        live = LiveService(SimilarityService.open(run_dir, limits=limits, warm=True), run_dir).start()
        app = create_app(live, max_upload=max_upload,
                         allowed_hosts=tuple(allowed_hosts) if allowed_hosts else default_allowed_hosts(host))
        if write_token:
            from .write import add_write_routes

            add_write_routes(app, live, write_token, max_upload)
        log.info("serving %s on http://%s:%d/ (API docs at /docs; writes %s)", run_dir, host, port,
                 "on" if write_token else "off")
        config = uvicorn.Config(app, log_level="warning", access_log=False, http=json_error_protocol())
        try:
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            live.stop()
    finally:
        sock.close()
