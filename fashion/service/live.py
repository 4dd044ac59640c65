"""A served run that follows its directory's versions (issue 28 item 6): no restart, no failed request.

:class:`LiveService` stands for the :class:`~.query.SimilarityService` of the run's current version:
every attribute and method is the current service's, looked up when a request asks, so a request holds
the version it started on until it ends (its bound method keeps the old service alive). A watcher thread
checks the directory every ``poll_s`` seconds (:func:`identity`: the directory's inode, which a commit's
swap changes, and its manifest's run id); on a change it opens the new version beside the old one
(:func:`reopen`: the run read and checked whole, the network, classifier and memory budget shared with
the old service, not loaded again) and swaps the reference in one assignment. A version that cannot be
opened (a damaged copy, a half-made directory by hand) is logged once and the old one keeps answering.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from .query import SimilarityService

log = logging.getLogger("fashion.service")

POLL_S = 1.0


def identity(run_dir) -> tuple | None:
    """(device, inode, run id) of the run directory now; None while it cannot be read."""
    from ..errors import FashionError
    from ..rundir import read_manifest

    try:
        st = os.stat(run_dir)
        return st.st_dev, st.st_ino, read_manifest(run_dir)["run_id"]
    except (OSError, FashionError):
        return None


def reopen(old: SimilarityService, run_dir) -> SimilarityService:
    """The service of the run now at ``run_dir``, sharing ``old``'s network, classifier and budget when
    the new version embeds as the old one did (else opened from scratch)."""
    from ..run.index import load as load_index
    from ..run.reader import open_run, pinned
    from .loading import read_model_reports

    with pinned(run_dir):
        run = open_run(run_dir, load_index=False, stored_lists=True)  # id queries from the new version's lists
        if run.info.get("embedder") != old.run.info.get("embedder"):
            log.info("%s: the new version embeds differently: loading its model", run_dir)
            return SimilarityService.open(run_dir, limits=old.budget.limits)
        run.index = load_index(run)
        reports = read_model_reports(run.info)
    service = SimilarityService(run, old.embedder, old.classifier, limits=old.budget.limits, reports=reports)
    service.budget = service.files.budget = old.budget  # one memory budget for both versions' photos in flight
    return service


class LiveService:
    """The current version's :class:`SimilarityService` (attributes looked up per access), swapped by
    :meth:`refresh` — by the watcher (:meth:`start`) or by a writer that just committed."""

    def __init__(self, service: SimilarityService, run_dir, poll_s: float = POLL_S):
        self.current = service
        self.run_dir = Path(run_dir)
        self.poll_s = float(poll_s)
        self.swaps = 0
        self._seen = identity(self.run_dir)
        self._failed = None  # the identity that could not be opened (not retried until it changes)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __getattr__(self, name):  # only for names not found on LiveService itself
        return getattr(self.current, name)

    def describe(self) -> dict:
        """/healthz: the current service's description, its version and run id."""
        info = self.current.run.info
        return {**self.current.describe(), "version": info.get("version", 1), "run_id": info.get("run_id")}

    def refresh(self) -> bool:
        """Swap to the directory's version when it changed since the last look; True when it swapped."""
        with self._lock:
            now = identity(self.run_dir)
            if now is None or now == self._seen or now == self._failed:
                return False
            start = time.perf_counter()
            try:
                service = reopen(self.current, self.run_dir)
            except Exception as exc:  # noqa: BLE001 - any refusal: keep answering from the old version
                self._failed = now
                log.warning("%s: a new version could not be opened (%s); still serving run %s", self.run_dir,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                            str(self.current.run.info.get("run_id"))[:12])
                return False
            self.current, self._seen = service, now  # pinned(): what was read is the version of `now`
            self.swaps += 1
            log.info("%s: now serving version %s (run %s, %d items), opened in %.2f s", self.run_dir,
                     service.run.info.get("version", 1), str(service.run.info.get("run_id"))[:12],
                     service.n_items, time.perf_counter() - start)
            return True

    def start(self) -> "LiveService":
        """Watch the directory from a daemon thread until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="fashion-live", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the watcher never dies; the next poll tries again
                log.exception("%s: checking for a new version failed", self.run_dir)
