"""Executors: who runs a stage's tasks. They know no stage (clip-retrieval's distributors).

A stage hands an executor a *worker factory* (a picklable callable that builds the worker: a model, an
opened index …, once per process or actor) and a list of tasks (tuples of arguments); :meth:`map` yields
``worker(*task)`` for every task, in any order. :class:`LocalExecutor` (the default) runs them in this
process; :class:`RayExecutor` (the ``[scale]`` extra) runs them on a pool of Ray actors, each building its
worker once. The same task gives the same result under either, so vectors and neighbours do not depend
on the executor.

Ray is imported here only, lazily. Without ``address`` a private local Ray is started on 127.0.0.1 and
shut down at the end; with ``address`` (e.g. ``"auto"`` after ``ray start --head --node-ip-address
127.0.0.1``) the job joins that cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from ..errors import FashionError
from ..options import ENGINES, default

log = logging.getLogger(__name__)

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 instead of the host's address


class LocalExecutor:
    """Every task in this process, in order, with one worker."""

    name = "local"

    def map(self, make_worker: Callable, tasks: Sequence[tuple]) -> Iterator:
        if not tasks:
            return
        worker = make_worker()
        for task in tasks:
            yield worker(*task)


@dataclass
class RayExecutor:
    """The tasks on a pool of ``actors`` Ray actors (``cpus_per_actor`` / ``gpus_per_actor`` each), one
    worker per actor; ``address``: the cluster (None: a private loopback-only local Ray)."""

    address: str | None = default("address")
    actors: int = default("actors")
    cpus_per_actor: float = default("cpus_per_actor")
    gpus_per_actor: float = default("gpus_per_actor")
    name = "ray"

    def map(self, make_worker: Callable, tasks: Sequence[tuple]) -> Iterator:
        if not tasks:
            return
        with session(self.address) as ray:
            from ray.util import ActorPool

            actor = ray.remote(num_cpus=self.cpus_per_actor, num_gpus=self.gpus_per_actor or None)(_Actor)
            pool = ActorPool([actor.remote(make_worker) for _ in range(max(1, min(self.actors, len(tasks))))])
            yield from pool.map_unordered(lambda a, task: a.run.remote(*task), list(tasks))


class _Actor:
    """A Ray actor holding one worker built by the factory."""

    def __init__(self, make_worker):
        self.worker = make_worker()

    def run(self, *task):
        return self.worker(*task)


def make_executor(engine: str = "local", address: str | None = None, actors: int = default("actors"),
                  cpus_per_actor: float = default("cpus_per_actor"), gpus_per_actor: float = default("gpus_per_actor")):
    """The executor an ``--engine`` names (``local`` or ``ray``, with the Ray options)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "ray":
        return RayExecutor(address, actors, cpus_per_actor, gpus_per_actor)
    return LocalExecutor()


def of(config):
    """The executor of a config with ``engine`` (and optionally the Ray options) fields."""
    return make_executor(config.engine, getattr(config, "address", None), getattr(config, "actors", default("actors")),
                         getattr(config, "cpus_per_actor", default("cpus_per_actor")),
                         getattr(config, "gpus_per_actor", default("gpus_per_actor")))


def _ray(local: bool = False):
    """Import Ray; for a private local Ray, first make it bind and advertise loopback only (Ray turns a
    node IP of 127.0.0.1 into the host's interface address unless this is set before its import)."""
    import sys

    if local and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError:  # pragma: no cover - depends on the extra
        raise FashionError("engine 'ray' needs the scale extra: pip install 'fashion[scale]' "
                           "(or pip install 'ray>=2.51')") from None
    return ray


@contextlib.contextmanager
def session(address: str | None = None):
    """Use the running Ray (tests, notebooks), join ``address``, or start a loopback-only local one."""
    ray = _ray(local=not address)
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
