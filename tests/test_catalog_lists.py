"""fashion.catalog: random add/remove sequences on tiny synthetic vectors equal a fresh full computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fashion.catalog import state
from fashion.catalog.kept import KEPT_INDEXES, lost_cells, thin_probes
from fashion.catalog.lists import Lists, from_table, search
from fashion.neighbors import build_index
from fashion.retrieval import compute_metrics

from hypothesis import Phase, example, given, settings, strategies as st  # noqa: E402  (the dev extra: the property test runs, never skips)

LABELS = ("a", "b", "c")


def _frame(n: int, start: int, rng) -> pd.DataFrame:
    return pd.DataFrame({"path": [f"/p/{start + i}.jpg" for i in range(n)],
                         "relpath": [f"{start + i}.jpg" for i in range(n)],
                         "label": rng.choice(LABELS, n).tolist(), "split": [""] * n})


def rebuild(cat: state.Catalog, k_requested: int, metric: str):
    """What a fresh run over the live items computes: all-pairs exact search, then the metrics."""
    live = np.flatnonzero(cat.live & cat.items["ok"].to_numpy(bool))
    k = min(k_requested, len(live) - 1)
    dist, rows = build_index("exact", metric=metric).fit(cat.vectors[live]).kneighbors(None, n_neighbors=k)
    return live, live[rows], dist, compute_metrics(cat.items, live, live[rows], k)


def _catalog(n: int, d: int, k: int, metric: str, rng, index: str = "exact", vectors=None, **params) -> state.Catalog:
    frame = _frame(n, 0, rng)
    cat = state.Catalog(None, frame.iloc[:0].assign(id=[], ok=[], reason=[], role=[]), np.zeros((0, d), np.float32),
                        {"index": {"name": index, "metric": metric}, "arguments": {"index": index},
                         "dataset": {"format": "folder"}}, {"k": k, "k_requested": k}, Lists.concat([], k))
    ids = state.append(cat, frame, rng.normal(size=(n, d)) if vectors is None else vectors, np.ones(n, bool), [""] * n)
    live = ids
    fitted = build_index(index, metric=metric, **params).fit(cat.vectors[live])
    cat.lists = search(fitted, live, cat.vectors[live], live, min(k, n - 1), True)
    cat.index = fitted if index in KEPT_INDEXES else None
    cat.index_ids = live if cat.index is not None else None
    cat.items["role"] = "both"
    return cat


def _step(cat: state.Catalog, op: str, m: int, rng, vectors=None) -> None:
    added = removed = np.zeros(0, np.int64)
    if op == "add":
        vectors = rng.normal(size=(m, cat.vectors.shape[1])) if vectors is None else vectors
        if m > 1 and cat.index is None:
            vectors[-1] = vectors[0]  # a copy: tied at distance 0 with its twin
        added = state.append(cat, _frame(m, len(cat.items), rng), vectors, np.ones(m, bool), [""] * m)
    else:
        live = np.flatnonzero(cat.live)
        removed = rng.choice(live, size=min(m, len(live) - 3), replace=False)
        state.tombstone(cat, removed)
    query, gallery, _, _, k, lists = state.update_lists(cat, added, removed, state._Timer())
    cat.items["role"] = state.role_column(cat, query, gallery)
    cat.lists, cat.metrics = lists, {**cat.metrics, "k": k}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), metric=st.sampled_from(["cosine", "euclidean"]),
       k=st.integers(1, 6), ops=st.lists(st.tuples(st.sampled_from(["add", "remove"]), st.integers(1, 7)),
                                         min_size=1, max_size=6))
def test_random_adds_and_removes_equal_a_rebuild(seed, metric, k, ops):
    rng = np.random.default_rng(seed)
    cat = _catalog(int(rng.integers(5, 30)), 4, k, metric, rng)
    for op, m in ops:
        _step(cat, op, m, rng)
        queries, ids, dist, metrics = rebuild(cat, k, metric)
        assert np.array_equal(cat.lists.query_ids, queries)
        np.testing.assert_allclose(cat.lists.dist, dist, rtol=1e-6, atol=1e-7)
        # ranks tied in distance may hold either twin; every other rank holds the same item
        tied = np.isclose(cat.lists.dist, dist, rtol=0, atol=1e-6) & (
            np.abs(np.diff(np.pad(dist, ((0, 0), (1, 1)), constant_values=np.inf), axis=1)[:, :-1]) < 1e-6)
        tied |= np.abs(np.diff(np.pad(dist, ((0, 0), (0, 1)), constant_values=np.inf), axis=1)) < 1e-6
        assert np.array_equal(cat.lists.ids[~tied], ids[~tied])
        got = compute_metrics(cat.items, cat.lists.query_ids, cat.lists.ids, cat.lists.k)
        if not tied.any():
            assert got == metrics


def test_an_added_item_changes_only_the_lists_it_enters():
    rng = np.random.default_rng(0)
    cat = _catalog(40, 8, 3, "cosine", rng)
    before = cat.lists
    near = cat.vectors[5] + 1e-3 * rng.normal(size=8)  # next to item 5 only
    added = state.append(cat, _frame(1, 40, rng), near[None], np.ones(1, bool), [""])
    state.update_lists(cat, added, np.zeros(0, np.int64), state._Timer())
    assert 1 <= cat.stats["lists_changed"] < 10  # item 5's list and few others, not all 40
    assert cat.stats["lists_searched"] == 1  # only the new photo's own list is searched
    assert before.ids.shape == (40, 3)


def test_a_removal_is_refilled_from_the_reserve_without_a_search():
    rng = np.random.default_rng(3)
    cat = _catalog(60, 8, 4, "cosine", rng)
    _step(cat, "add", 2, rng)  # the new items' lists are searched with their reserve
    cat.lists = state.update_lists(cat, np.zeros(0, np.int64), np.zeros(0, np.int64), state._Timer(), full=True)[5]
    reserve = cat.reserve
    assert reserve.ids.shape == (62, 4) and (reserve.ids >= 0).all()  # k more known per query
    victims = np.unique(cat.lists.ids[:5, 0])  # the nearest neighbour of the first five queries
    state.tombstone(cat, victims)
    query, gallery, _, _, k, lists = state.update_lists(cat, np.zeros(0, np.int64), victims, state._Timer())
    assert cat.stats["lists_searched"] == 0  # every loss taken from a reserve
    cat.lists = lists
    queries, ids, dist, _ = rebuild(cat, 4, "cosine")
    assert np.array_equal(lists.query_ids, queries) and np.array_equal(lists.ids, ids)
    np.testing.assert_allclose(lists.dist, dist, rtol=1e-6, atol=1e-7)
    assert ((cat.reserve.ids >= 0).sum(axis=1) <= 4).all()


def _recall(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, truth)]))


def test_ivfpq_adds_and_removes_keep_the_rebuilds_recall():
    """faiss-ivfpq (IVF-Flat here: 1,500 points): the trained quantiser encodes the new vectors, and the
    updated lists are what a search of every list with that kept index gives; their recall@10 against the
    exact lists is within 0.005 of (or above) the worst of six retrained rebuilds (training seeds 0-5): a
    rebuild's own recall moves by up to 0.04 between seeds at nprobe 2, so one rebuild is no fixed target.
    (The worst of three held until adds merged every new item nearer than a list's last entry, wherever
    it lay, which beat the index's own search; the kept index at the removal step: 0.8985, retrained
    0.887-0.916.)"""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(12, 16))
    def draw(n):
        return centres[rng.integers(0, 12, n)] + 0.35 * rng.normal(size=(n, 16))
    cat = _catalog(1500, 16, 10, "cosine", rng, index="faiss-ivfpq", vectors=draw(1500), nprobe=2)  # recall < 1
    trained = cat.index
    for op, m in (("add", 200), ("remove", 150), ("add", 300)):
        _step(cat, op, m, rng, vectors=draw(m) if op == "add" else None)
        live = np.flatnonzero(cat.live)
        exact = build_index("exact", metric="cosine").fit(cat.vectors[live]).kneighbors(None, n_neighbors=10)[1]
        want = min(_recall(live[build_index("faiss-ivfpq", metric="cosine", nprobe=2, seed=seed).fit(
            cat.vectors[live]).kneighbors(None, n_neighbors=10)[1]], live[exact]) for seed in range(6))
        assert np.array_equal(cat.lists.query_ids, live)
        got = _recall(cat.lists.ids, live[exact])
        assert want < 0.99 and got >= want - 0.005
        kept = state.update_lists(cat, np.zeros(0, np.int64), np.zeros(0, np.int64), state._Timer(), full=True)[5]
        assert np.array_equal(cat.lists.ids, kept.ids)  # the kept index's own search of every list
    assert cat.index is not trained and cat.index.n_samples_fit_ == len(np.flatnonzero(cat.live))


FACTORY, NPROBE = "IVF32,PQ8x4", 2  # the on-disk kind: 4-bit codes train in a second and miss neighbours
FLAT = "IVF32,Flat"  # the property test's codes: the search is approximate by nprobe alone (see there)


def _disk_rebuild_recall(vectors: np.ndarray, live: np.ndarray, truth: np.ndarray, where) -> float:
    """The worst recall@10 (against ``truth``) of three rebuilds of the ``live`` rows as fresh on-disk runs
    (what measure_sim --index ivfpq-disk builds; training seeds 0-2)."""
    from factories import make_ivfpq_run

    from fashion.run.reader import open_run

    worst = 1.0
    for seed in range(3):
        run = make_ivfpq_run(where / f"rebuild{seed}", vectors[live], k=10, factory=FACTORY, nprobe=NPROBE, seed=seed)
        worst = min(worst, _recall(live[from_table(open_run(run, load_index=False).neighbors(), 10).ids], truth))
    return worst


def _disk_change(run_dir, op: str, m: int, rng, draw) -> state.Catalog:
    """One committed change of the run (a new sealed version): ``m`` new vectors, or ``m`` live items removed."""
    from fashion.catalog import versions

    with versions.writer(run_dir):
        cat = state.load(run_dir)
        if op == "add":
            ids = state.append(cat, _frame(m, len(cat.items), rng), draw(m), np.ones(m, bool), [""] * m)
            state.commit(cat, {"op": "add", "count": m}, added=ids)
        else:
            live = np.flatnonzero(cat.live)
            doomed = np.sort(rng.choice(live, size=min(m, len(live) - 50), replace=False))
            state.tombstone(cat, doomed)
            state.commit(cat, {"op": "remove", "count": len(doomed)}, removed=doomed)
    return cat


def _draws(rng, d: int = 16):
    centres = rng.normal(size=(12, d))

    def draw(n):
        return (centres[rng.integers(0, 12, n)] + 0.35 * rng.normal(size=(n, d))).astype(np.float32)
    return draw


def _live_truth(cat: state.Catalog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit vectors of every row, live ids, their exact all-pairs top 10)."""
    vectors = np.asarray(cat.vectors)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    live = np.flatnonzero(cat.live)
    return vectors, live, live[build_index("exact", metric="cosine").fit(vectors[live]).kneighbors(None, n_neighbors=10)[1]]


@pytest.mark.parametrize("kind", ["memory", "disk"])
@settings(max_examples=3, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate))  # no shrinking: minutes
@example(seed=2066, ops=[("remove", 162)])  # found by a random run: the first change widens the lists to their
# reserve, and a search bound at k + 1 neighbours (its probed cells held 14) went exact at the reserve's 22
@example(seed=326, ops=[("remove", 221), ("remove", 164), ("remove", 97)])  # found by a random run (#28): removals
# emptied some lists' probed cells below the wide search's 21, so their fresh search went exact (kneighbors'
# repair) while their lists were refilled from a reserve of the cell-bound search: 0.8911 vs 0.8976
@given(seed=st.integers(0, 10_000), ops=st.lists(st.tuples(st.sampled_from(["add", "remove"]), st.integers(1, 250)),
                                                 min_size=1, max_size=3))
def test_random_ivfpq_adds_and_removes_keep_a_rebuilds_recall(kind, seed, ops):
    """IVF-PQ runs of both kinds (faiss-ivfpq in memory; the on-disk index, changed through committed
    versions: base linked, delta written and read back, folded past its share): after a random sequence of
    adds and removes, recall@10 of the run's lists is within 0.005 of (or above) a full rebuild of the lists
    with the same trained quantiser (every list searched again in an index of every live vector's code:
    the codes are deterministic, so the kept ones are the ones a re-encoding gives), and the lists are that
    rebuild's: in memory equal, ids and distances; on disk, whose search re-ranks the base's items from
    float16 rows (distances within ~3e-4 of the float32 ones the kept lists merge with), equal but for
    near-ties, a member that differs lying within 1e-3 of the k-th distance. The codes are flat
    (IVF-Flat, approximate by nprobe alone): with PQ codes a fresh search also gains from the removals
    themselves (a removed item's PQ candidate slot goes to another item, whose exact re-rank may win), which
    lists that lost no member do not see (4-bit codes at recall 0.90: 0.0054 below after 14 % removed).
    A retrained rebuild adds the training's own spread (a few hundredths here at nprobe 2): the PQ tests
    around this one hold the changed runs to the worst of three trainings on fixed data."""
    import tempfile
    from pathlib import Path

    from factories import make_ivfpq_run

    rng = np.random.default_rng(seed)
    draw = _draws(rng)
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "memory":
            cat = _catalog(1200, 16, 10, "cosine", rng, index="faiss-ivfpq", vectors=draw(1200), nprobe=NPROBE,
                           factory=FLAT)
            for op, m in ops:
                _step(cat, op, m, rng, vectors=draw(m) if op == "add" else None)
        else:
            run_dir = make_ivfpq_run(Path(tmp) / "run", draw(1200), k=10, factory=FLAT, nprobe=NPROBE)
            for op, m in ops:
                _disk_change(run_dir, op, m, rng, draw)
            cat = state.load(run_dir)
        _, live, exact = _live_truth(cat)
        assert np.array_equal(cat.lists.query_ids, live)
        got = _recall(cat.lists.ids, exact)
        rebuilt = state.update_lists(cat, np.zeros(0, np.int64), np.zeros(0, np.int64), state._Timer(), full=True)[5]
        want = _recall(rebuilt.ids, exact)
        assert want < 1.0 and got >= want - 0.005, (got, want)  # the search is approximate: it missed some
        assert cat.index.n_samples_fit_ == len(live)
        if kind == "memory":  # flat codes: every list is the re-search's, ids and distances
            assert np.array_equal(cat.lists.ids, rebuilt.ids)
            np.testing.assert_array_equal(cat.lists.dist, rebuilt.dist)
        else:  # the same, but for the base's float16 re-rank rows: a member differs only as a near-tie
            for a, b, da, db in zip(cat.lists.ids, rebuilt.ids, cat.lists.dist, rebuilt.dist):
                assert all(da[a == x][0] >= db[-1] - 1e-3 for x in np.setdiff1d(a, b)), (a, b, da, db)
                assert all(db[b == x][0] >= da[-1] - 1e-3 for x in np.setdiff1d(b, a)), (a, b, da, db)


def test_ivfpq_removals_that_thin_a_lists_probed_cells_search_it_again():
    """IVF-Flat at nprobe 2, removals only: every list equals a full re-search with the same quantiser. A
    search whose probed cells hold fewer vectors than it asks for is searched exactly (kneighbors' repair),
    so a list refilled from a reserve of the cell-bound search would miss nearer items in other cells (#28)."""
    rng = np.random.default_rng(326)
    draw = _draws(rng)
    cat = _catalog(1200, 16, 10, "cosine", rng, index="faiss-ivfpq", vectors=draw(1200), nprobe=NPROBE, factory=FLAT)
    searched = []
    for m in (221, 164, 97):
        _step(cat, "remove", m, rng)
        searched.append(cat.stats["lists_searched"])
    thin = thin_probes(cat.index, cat.vectors, cat.lists.query_ids, 21)
    assert 0 < len(thin) < len(cat.lists.query_ids) // 4  # some probes thinned, most lists kept
    rebuilt = state.update_lists(cat, np.zeros(0, np.int64), np.zeros(0, np.int64), state._Timer(), full=True)[5]
    assert np.array_equal(cat.lists.query_ids, rebuilt.query_ids)
    np.testing.assert_array_equal(cat.lists.dist, rebuilt.dist)
    assert np.array_equal(cat.lists.ids, rebuilt.ids)
    assert searched[-1] < len(cat.lists.query_ids) // 10  # the reserve still refills the others


def test_ivfpq_adds_keep_every_list_equal_to_a_full_search_with_the_same_index():
    """IVF-Flat at nprobe 2 (the codes are the vectors: approximate by nprobe alone), removals then adds:
    every list equals a full re-search with the same index, ids and distances. An existing list takes a
    new item only where its search reaches it (the item is in one of its probed lists, or the search is
    exact because those lists hold too few); a list whose search was exact and whose lists the adds filled
    again is searched again (it is bound to its lists now). Before, every new item nearer than a list's
    last entry entered it, wherever it lay, and those lists stayed exact: 6-20 % of the lists differed (three seeds)."""
    rng = np.random.default_rng(5)
    draw = _draws(rng)
    cat = _catalog(1200, 16, 10, "cosine", rng, index="faiss-ivfpq", vectors=draw(1200), nprobe=NPROBE, factory=FLAT)
    for m in (221, 164, 97):
        _step(cat, "remove", m, rng)
    thin = thin_probes(cat.index, cat.vectors, cat.lists.query_ids, 21)
    assert len(thin)  # searched exactly now: the removals emptied their probed lists
    near = np.asarray(cat.vectors[np.repeat(thin, 3)]) + 0.05 * rng.normal(size=(3 * len(thin), 16))
    _step(cat, "add", len(near), rng, vectors=near.astype(np.float32))  # fills those lists again
    assert len(near) < cat.stats["lists_searched"] <= len(near) + len(thin)  # the new lists and some of those
    _step(cat, "add", 150, rng, vectors=draw(150))  # anywhere: most lists are bound to their cells
    rebuilt = state.update_lists(cat, np.zeros(0, np.int64), np.zeros(0, np.int64), state._Timer(), full=True)[5]
    assert np.array_equal(cat.lists.query_ids, rebuilt.query_ids)
    assert np.array_equal(cat.lists.ids, rebuilt.ids)
    np.testing.assert_array_equal(cat.lists.dist, rebuilt.dist)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nearest_allowed_is_the_exact_search_among_each_rows_allowed_items(metric):
    from fashion.catalog.lists import nearest_allowed

    rng = np.random.default_rng(2)
    X, Q = rng.normal(size=(60, 8)).astype(np.float32), rng.normal(size=(12, 8)).astype(np.float32)
    index = build_index("exact", metric=metric).fit(X)
    allowed = rng.random((12, 60)) < 0.3
    allowed[0], allowed[1], allowed[2] = False, True, np.arange(60) < 3  # none, all, fewer than k
    dist, rows = nearest_allowed(index, Q, allowed, 5)
    assert (rows[0] == -1).all() and np.isinf(dist[0]).all()
    assert (rows[2, 3:] == -1).all() and sorted(rows[2, :3]) == [0, 1, 2]
    for i in range(1, 12):
        ok = np.flatnonzero(allowed[i])
        d, r = build_index("exact", metric=metric).fit(X[ok]).kneighbors(Q[i:i + 1], n_neighbors=min(5, len(ok)))
        assert rows[i, :len(ok)].tolist() == ok[r[0]].tolist()
        np.testing.assert_array_equal(dist[i, :len(ok)], d[0])


def test_ivfpq_pq_codes_lists_take_only_the_new_items_their_search_reaches():
    """With PQ codes no kept list can equal a re-search by construction (a search's candidates are its
    probed lists' best ``rerank`` PQ codes, which new codes displace, and no run keeps them), so the rule that
    holds is the reach: after adds, each existing list's entries lie in the lists its search probes (or
    anywhere, where its search is exact); the recall tests above hold these runs to a rebuild's."""
    from fashion.neighbors.ivfpq import probed_total

    rng = np.random.default_rng(11)
    draw = _draws(rng)
    cat = _catalog(1200, 16, 10, "cosine", rng, index="faiss-ivfpq", vectors=draw(1200), nprobe=NPROBE,
                   factory=FACTORY)
    old = cat.lists.query_ids.copy()
    _step(cat, "add", 200, rng, vectors=draw(200))
    index, rows = cat.index, np.flatnonzero(np.isin(cat.lists.query_ids, old))
    probes = index.probed_cells(cat.vectors[cat.lists.query_ids[rows]])
    bound = probed_total(probes, index.list_sizes()) >= 21
    cells = index.cells_of(np.searchsorted(cat.index_ids, cat.lists.ids[rows]))
    inside = (cells[:, :, None] == probes[:, None, :]).any(axis=2)
    assert bound.mean() > 0.9 and inside[bound].all()
    assert (cat.lists.ids[rows] >= 1200).any()  # new items did enter lists


def test_thin_probes_flags_only_searches_whose_probed_cells_lost_a_member(monkeypatch):
    """Review of #28: a removal flags only the queries whose probed cells it took a member from (and which
    are thin now), and runs no quantiser pass at all when every cell it thinned still holds enough."""
    rng = np.random.default_rng(326)
    draw = _draws(rng)
    cat = _catalog(1200, 16, 10, "cosine", rng, index="faiss-ivfpq", vectors=draw(1200), nprobe=NPROBE, factory=FLAT)
    for m in (221, 164):
        _step(cat, "remove", m, rng)
    index, queries, need = cat.index, cat.lists.query_ids, 21
    sizes = index.list_sizes()
    cells = index.probed_cells(cat.vectors[queries])
    every = thin_probes(index, cat.vectors, queries, need)  # thin whatever the removal
    assert np.array_equal(every, queries[np.where(cells >= 0, sizes[np.maximum(cells, 0)], 0).sum(1) < need])
    # the items of one cell that a thin search visits, and one other cell: lost_cells reads them from the lists
    small = int(np.bincount(cells[member_rows(queries, every)].ravel(), minlength=len(sizes))[:len(sizes)].argmax())
    rows = np.flatnonzero(index.cells_of(np.arange(len(cat.index_ids))) == small)[:2]
    big = int(np.argmax(sizes))
    other = np.flatnonzero(index.cells_of(np.arange(len(cat.index_ids))) == big)[:1]
    removed = cat.index_ids[np.r_[rows, other]]
    assert lost_cells(index, cat.index_ids, removed).tolist() == sorted({small, big})
    assert np.array_equal(lost_cells(index, cat.index_ids, removed), np.unique(index.coarse_lists(cat.vectors[removed])))
    flagged = thin_probes(index, cat.vectors, queries, need, lost=np.array([small, big]))
    want = every[(cells[member_rows(queries, every)] == small).any(axis=1)]
    assert 0 < len(flagged) < len(every) and np.array_equal(flagged, want)
    assert sizes[big] >= need
    monkeypatch.setattr(index, "probed_cells", lambda X: pytest.fail("no quantiser pass when no lost cell is thin"))
    assert len(thin_probes(index, cat.vectors, queries, need, lost=np.array([big]))) == 0
    assert len(thin_probes(index, cat.vectors, queries, need, lost=np.zeros(0, np.int64))) == 0


def member_rows(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isin(values, ids))


def test_reachable_in_bf16_keeps_every_row_the_float32_product_reaches_and_merges_the_same():
    """fashion add's m x n product of the new items against every list (lists.reachable) runs in bf16
    where the CPU has it; its bound may only add rows, so the merged lists are the float32 product's.
    The new items include copies of rows' k-th neighbours: ties at the threshold itself."""
    from fashion.catalog.lists import merge_added, reachable
    from fashion.neighbors.bf16 import native_bf16

    if not native_bf16():
        pytest.skip("no native bf16 on this CPU: reachable stays in float32 there")
    rng = np.random.default_rng(7)
    draw = _draws(rng, d=64)
    cat = _catalog(3000, 64, 10, "cosine", rng, vectors=draw(3000))
    kth = cat.lists.ids[rng.choice(len(cat.lists.ids), 40, replace=False), -1]
    new = np.concatenate([draw(160), np.asarray(cat.vectors[kth]) * 1.5]).astype(np.float32)
    fp32 = reachable(cat.lists, cat.vectors, new, "cosine", precision="fp32")
    bf16 = reachable(cat.lists, cat.vectors, new, "cosine", precision="bf16")
    assert set(fp32) <= set(bf16) and len(bf16) < len(cat.lists.ids)  # a superset, still a filter
    assert len(set(bf16) - set(fp32)) > 0  # the bound's width shows (the rows it adds merge to themselves)
    new_ids = np.arange(len(cat.vectors), len(cat.vectors) + len(new))
    vectors = np.concatenate([np.asarray(cat.vectors), new])
    small = build_index("exact", metric="cosine").fit(new)
    merged = {p: merge_added(cat.lists, vectors, small, new_ids, new_vectors=new, precision=p) for p in ("fp32", "bf16")}
    assert merged["fp32"][1] == merged["bf16"][1] > 0
    np.testing.assert_array_equal(merged["fp32"][0].ids, merged["bf16"][0].ids)
    np.testing.assert_array_equal(merged["fp32"][0].dist, merged["bf16"][0].dist)


def test_disk_ivfpq_adds_and_removes_keep_the_retrained_rebuilds_recall(tmp_path):
    """The on-disk kind against retrained rebuilds (fresh on-disk runs of the final items, training seeds
    0-2), as the in-memory test above: within 0.005 of (or above) the worst of the three."""
    from factories import make_ivfpq_run

    rng = np.random.default_rng(3)
    draw = _draws(rng)
    run_dir = make_ivfpq_run(tmp_path / "run", draw(1500), k=10, factory=FACTORY, nprobe=NPROBE)
    for op, m in (("add", 200), ("remove", 150), ("add", 300)):
        _disk_change(run_dir, op, m, rng, draw)
    cat = state.load(run_dir)
    vectors, live, exact = _live_truth(cat)
    want = _disk_rebuild_recall(vectors, live, exact, tmp_path)
    got = _recall(cat.lists.ids, exact)
    assert want < 0.99 and got >= want - 0.005, (got, want)


def test_drift_is_reported_when_new_vectors_fall_elsewhere():
    from fashion.catalog import drift

    rng = np.random.default_rng(4)
    centres = rng.normal(size=(12, 16))
    same = centres[rng.integers(0, 12, 2000)] + 0.35 * rng.normal(size=(2000, 16))
    index = build_index("faiss-ivfpq", metric="cosine").fit(same[:1500])
    assert not drift.measure(index, same[1500:]).retrain
    elsewhere = 3 * rng.normal(size=(1, 16)) + 0.35 * rng.normal(size=(500, 16))  # one new cluster
    moved = drift.measure(index, elsewhere)
    assert moved.retrain and moved.tv > 0.5
