"""The one orchestrator: :func:`measure` runs the stages of a run of any size, all of them
(``measure_sim.py`` / ``fashion neighbors``) or a range of them on the same work (the verbs
``fashion manifest → embed → index → knn``, :data:`VERBS`); :data:`STAGES` is the one stage order.

    manifest (the item table, id-keyed) → embed (id-keyed shards, by the executor) → index (auto: by size
    and memory) → search (the neighbour parts) → seal (embeddings.npy by id, metrics, item-table stages,
    report, insight, run.json, manifest)

Every stage before the seal writes its work into a work directory and is resumed by a rerun:
``CACHE/scale/<dataset>-<embedder>/`` for ``measure_sim.py`` (:func:`fashion.pipeline.vectors.work_dir`),
the run directory itself for the verbs. The embed stage embeds only the ids still missing; a finished
index (in memory: ``memory-index/index.npz``; on disk: ``index/``) and finished neighbour parts
(``memory-knn/``, ``knn/``) of the same embeddings, gallery and settings are kept, so a rerun after a
kill redoes no finished stage. The seal is a transaction (:mod:`fashion.rundir`): written into a staging
directory beside ``output_dir`` and swapped into place in one step, so a failed or killed rerun leaves
the previous run as it was; the work's finished files are hard-linked into the run, not copied.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..run import listcache
from ..runresult import RunResult, Stopwatch
from . import index as index_mod
from . import read, search, seal, vectors

log = logging.getLogger(__name__)

STAGES = ("manifest", "embed", "index", "search", "seal")  # the one stage order
# the sharded verbs: each one the orchestrator with its range of STAGES, on the run directory as work
VERBS = {"manifest": ("manifest",), "embed": ("embed",), "index": ("index",), "knn": ("search", "seal")}


def stage_range(stages) -> tuple[str, ...]:
    """``stages`` checked: consecutive names of :data:`STAGES` in its order; a range that seals includes
    the search stage (the seal tallies and links its parts; a finished search is kept, not redone).

    >>> stage_range(["search", "seal"])
    ('search', 'seal')
    """
    stages = tuple(stages)
    if not stages or any(s not in STAGES for s in stages):
        raise ConfigError(f"stages must be names of {', '.join(STAGES)}, got {', '.join(stages) or 'none'}")
    first = STAGES.index(stages[0])
    if stages != STAGES[first:first + len(stages)]:
        raise ConfigError(f"stages must be a range of {' → '.join(STAGES)} in order, got {' → '.join(stages)}")
    if "seal" in stages and "search" not in stages:
        raise ConfigError("a range with the seal stage starts at the search stage at the latest")
    return stages


def measure(config, executor=None, stages=STAGES, work_dir=None, arguments: dict | None = None) -> RunResult:
    """Run ``stages`` (a range of :data:`STAGES`; all: the whole retrieval measurement) of ``config``
    (:class:`~fashion.pipeline.config.MeasureConfig`) with ``executor`` (:mod:`fashion.scale.executors`;
    None: the one ``config.engine`` names). ``work_dir``: the stages' work (None: measure_sim's, in the
    cache; the verbs: the run directory, whose manifest stage read the dataset, so the later stages read
    the items from its manifest). ``arguments``: run.json's (None: the config's fields).

    With the seal stage, the run's files appear in ``output_dir`` together, in one step, and the result
    holds its metrics and files; every range's result holds what each stage it ran returned in
    ``stages`` (manifest: :class:`fashion.scale.manifest.Manifest`, embed: ``EmbedResult``, index:
    :class:`fashion.pipeline.index.Built`, search: the neighbour parts)."""
    from .. import rundir
    from ..run import layout
    from ..scale import executors

    if config.output_dir is None:
        raise ConfigError("output_dir is required")
    if config.k < 1:
        raise ConfigError(f"k must be positive, got {config.k}")
    if config.size is not None:
        from ..runfiles import check_size

        check_size(config.size, "size")
    stages = stage_range(stages)
    executor = executors.of(config) if executor is None else executor
    job = _Job(config, executor, stages, None if work_dir is None else Path(work_dir), arguments)
    if "seal" not in stages:
        return job.run(None, _target(config.output_dir))
    keep = layout.WORK_DIRS if work_dir is not None else rundir.KEEP
    with rundir.transaction(config.output_dir, kind=layout.RUN_KIND, keep=keep) as txn:
        result = job.run(txn, txn.target)
    files = {name: txn.final(path) for name, path in result.files.items()}
    return RunResult(txn.target, result.metrics, files, result.stages)


def _target(output_dir) -> Path:
    """Where a run of ``output_dir`` lives (absolute; a symlink's target), as the transaction puts it."""
    target = Path(output_dir).absolute()
    return target.resolve() if target.is_symlink() else target


class _Job:
    """One call of :func:`measure`: the stages of its range over one work directory, each stage's inputs
    found (the items, the vectors, the roles, the finished index) when a stage first needs them."""

    def __init__(self, config, executor, stages, work_dir, arguments):
        self.config, self.executor, self.stages, self.arguments = config, executor, stages, arguments
        self.work, self.from_manifest = work_dir, work_dir is not None and "manifest" not in stages
        self.table = self.items = self.embedder = self.fp = self.out = self.txn = self.watch = None
        self.built = self.quality = None  # the search stage's index and the metrics of its neighbours
        self.done: dict = {}
        self._vectors = self._ok = self._reasons = self._roles = None

    # ---------------------------------------------------------------------------------------- run
    def run(self, txn, target: Path) -> RunResult:
        """The range's stages in :data:`STAGES` order, each timed on its line of the run's timings."""
        self.watch, self.txn, self.out = Stopwatch(), txn, None if txn is None else txn.path
        with self.watch.stage("load"):
            self._locate(target)
        for name in self.stages:
            if name == "seal":  # the seal times its own steps (item-table stages, report, insight, gallery)
                return self._seal()
            with self.watch.stage(name):
                self.done[name] = getattr(self, f"_{name}")()
        return RunResult(target, {}, {}, self.done)

    def _manifest(self):
        return vectors.manifest_stage(self.config, self.table, self.work, self.fp)

    def _embed(self):
        embedded = vectors.embed_stage(self.config, self.work, self.executor)
        if self.out is not None:  # a run is written: its embeddings.npy now (the model checked on them)
            self._gather()
        return embedded

    def _index(self):
        config = self.config
        _, gallery, _, _, _ = self._roles_of()
        d = self._vectors.shape[1] if self._vectors is not None else vectors.dimension(self.work)
        name = index_mod.choose_index(config.index, int(gallery.sum()), d, config.metric)
        return index_mod.index_stage(name, self._all_vectors, gallery, config.metric, self.work, config.seed,
                                     self.executor, config.factory, config.memory)

    def _search(self):
        query, gallery, _, k, all_pairs = self._roles_of()
        built = self.done.get("index") or self._finished_index()
        parts = search.search_stage(built, self._all_vectors, query, gallery, k, all_pairs, self.work,
                                    self.executor, self.config.nprobe, self.config.rerank)
        self.built, self.quality = built, search.metrics_stage(parts, self._frame(), k) if self.out else None
        return parts

    def _seal(self) -> RunResult:
        from ..run import writer

        config, table = self.config, self._table()
        query, gallery, mode, k, _ = self._roles_of()
        linked = writer.link_neighbors(self.out, self.done["search"])
        arguments = self.arguments if self.arguments is not None else {**asdict(config), "input": table.root}
        skipped = [{"path": rel, "reason": "file not found (listed in the annotations)"} for rel in table.missing]
        skipped += [{"path": rel, "reason": reason} for rel, reason in table.refused]  # by the file gate at load time
        embedded = self.done.get("embed")
        counts = {} if embedded is None else {"n_embedded": embedded.computed, "n_from_cache": embedded.done_before}
        counts["executor"] = getattr(self.executor, "name", "local")
        run = seal.Staged(self.out, self.txn.run_id, self._frame(), table.root, table.format, self._ok, self._reasons,
                          query, gallery, mode, k, config.k, config.metric, self.built, self._vectors,
                          vectors.embedder_info(self.work), arguments, skipped, counts,
                          {f"neighbors/{p.name}": p for p in linked})
        info = {"work_dir": str(Path(self.work).absolute())}
        if config.nprobe is None and config.rerank is None:  # the sealed index's own search: id queries may use them
            info[listcache.LISTS_KEY] = listcache.marker(k)
        metrics = seal.seal_run(run, self.quality, self.watch, config.grids, config.seed, config.insight_config(), info)
        log.debug("precision@%d = %.4f over %d queries (%s); %d images, %d skipped", k, metrics["precision_at_k"],
                  metrics["n_queries"], mode, metrics["n_images"], metrics["n_skipped"])
        return RunResult(self.out, metrics, run.files, self.done)

    # ------------------------------------------------------------------------------ the stages' inputs
    def _locate(self, target: Path) -> None:
        """The work directory, and the item table where the range reads the dataset."""
        if self.work is None:  # measure_sim's own work, in the cache: one directory per dataset and embedder
            self.table, self.items = read.read_stage(self.config)
            cache = self.config.cache_dir or target / "cache"
            self.work, self.embedder, self.fp = vectors.work_dir(self.config, self.table, cache)
        elif not self.from_manifest:  # the verbs' manifest stage: the dataset into the run directory
            self.table, self.items = read.read_stage(self.config)

    def _table(self, columns=None):
        """The item table: the dataset's (with its metadata joined), or the verbs' manifest's (``columns``:
        only these, when the range does not seal)."""
        if self.table is None:
            from ..datasets import ItemTable
            from ..scale import manifest

            info = manifest.Manifest.read(self.work)
            frame = manifest.to_frame(manifest.read_items(self.work, columns=None if self.out else columns))
            if not np.array_equal(frame["id"].to_numpy(), np.arange(info.count)):
                raise manifest.ManifestError(f"{self.work}: the manifest's ids are not 0..{info.count - 1} in order")
            self.table = ItemTable(frame.drop(columns="id"), info.format, info.root)
        return self.table

    def _frame(self):
        """The run's item frame: the dataset's with its shop metadata joined, or the manifest's."""
        return self.items if self.items is not None else self._table().frame

    def _gather(self) -> None:
        """embeddings.npy of the run (filled by id from the shards), ok and reasons; the model checked."""
        n = len(self._table(["split", "item_id"]))
        self._vectors, self._ok, self._reasons = vectors.gather(self.work, self.out, n)
        if self.embedder is not None:
            paths = self._table().frame["path"].astype(str).to_numpy()
            vectors.check_model_output(self._vectors, self._ok, self._reasons, self.embedder, paths)

    def _all_vectors(self):
        """The (n, d) vectors by id: the run's embeddings.npy, or (a range that writes no run) the shards'
        read into memory; only an in-memory index's build or search calls this."""
        if self._vectors is None:
            self._vectors = vectors.gather_in_memory(self.work, len(self._table(["split", "item_id"])))
        return self._vectors

    def _roles_of(self):
        """(query, gallery, mode, k, all_pairs) over the item rows."""
        if self._roles is None:
            table = self._table(["split", "item_id"])
            if self._ok is None and self.out is not None:  # a run is written: its embeddings.npy, ok and reasons
                self._gather()
            elif self._ok is None:
                self._ok, self._reasons = vectors.read_ok(self.work, len(table))
            query, gallery, mode = read.assign_roles(table, self._ok, self.config)
            self._roles = (query, gallery, mode, *search.clamp_k(self.config.k, query, gallery))
        return self._roles

    def _finished_index(self):
        """The index stage's finished build, for a range that starts after it."""
        _, gallery, _, _, _ = self._roles_of()
        built = index_mod.finished_index(self.config.index, self.config.metric, self.work, gallery, self.config.seed)
        if built is None:
            raise ConfigError(f"{self.work}: no finished {self.config.index} index of these embeddings and this "
                              f"gallery; run the index stage first (`fashion index {self.work}`)")
        return built
