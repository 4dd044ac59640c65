"""`fashion serve`: the HTTP API and web page over a finished run (:mod:`fashion.server.app`).

The page (``static/``) is plain ES modules, no build step. Each tab is a *view* module in
``static/views/``; to add one (e.g. duplicates, an embedding map), write ``static/views/NAME.js``
exporting ``default {id, title, available(ctx), render(root, ctx)}`` and list it in
``static/views/index.js``. ``ctx`` gives the API helpers, ``ctx.el`` (text-only DOM building) and
``ctx.showNeighbors(id)``; see ``static/app.js``.
"""

from .app import create_app, serve

__all__ = ["create_app", "serve"]
