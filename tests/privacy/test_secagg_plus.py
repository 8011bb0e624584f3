"""Tests for SecAgg+ (sparse neighbour graphs), secure_sum accounting and parameter checks."""

from __future__ import annotations

import logging
from collections import deque

import numpy as np
import pytest
from scipy.stats import chisquare

from fedmetamal.privacy import secagg_ring
from fedmetamal.privacy.secagg import (
    STAGES,
    AdvertiseKeys,
    EncryptedShare,
    KeyBroadcast,
    ProtocolError,
    RoutedShares,
    SecAggAborted,
    SecAggClient,
    SecAggServer,
    ShareKeysMsg,
    check_secagg_params,
    neighbour_graph,
    run_secagg,
    secure_sum,
    suggested_neighbours,
)
from fedmetamal.privacy.shamir import (
    SMALL_PRIME,
    batch_chunks,
    reconstruct_bytes_batch,
    share_bytes_batch,
)

CLIP = 0.5
SEED = bytes(range(32))


def _updates(n: int, p: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.4, size=(n, p)).astype(np.float32)


def _plain(updates: np.ndarray, ids: list[int] | tuple[int, ...]) -> np.ndarray:
    q = sum(secagg_ring.quantise(updates[i], CLIP).astype(np.int64) for i in ids)
    return secagg_ring.dequantise_sum(q, len(ids), CLIP)


def _connected(adj: dict[int, frozenset[int]]) -> bool:
    start = next(iter(adj))
    seen, todo = {start}, deque([start])
    while todo:
        for v in adj[todo.popleft()]:
            if v not in seen:
                seen.add(v)
                todo.append(v)
    return len(seen) == len(adj)


# --------------------------------------------------------------------------- correctness


@pytest.mark.parametrize("frac", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("stage", STAGES)
def test_secagg_plus_sum_exact_with_dropouts(stage: str, frac: float) -> None:
    n, k, t, p = 40, 12, 5, 300
    upd = _updates(n, p)
    dropped = set(range(1, n, 3)[: round(frac * n)])
    res = secure_sum(upd, CLIP, t, dropouts={stage: dropped}, neighbours=k, seed=11)
    in_sum = [i for i in range(n) if stage == "unmasking" or i not in dropped]
    assert res.survivors == tuple(in_sum)
    assert set(res.dropped) == set(range(n)) - set(in_sum) and not res.excluded
    np.testing.assert_array_equal(res.total, _plain(upd, in_sum))


def test_secagg_plus_dropouts_at_every_stage() -> None:
    n, p = 60, 200
    upd = _updates(n, p, seed=5)
    drops = {"advertise": {0, 7}, "share_keys": {3, 19}, "masked_input": {4, 30}, "unmasking": {8}}
    res = secure_sum(upd, CLIP, 6, dropouts=drops, neighbours=12, seed=3)
    gone = {0, 7, 3, 19, 4, 30}
    assert res.dropped == tuple(sorted(gone))
    np.testing.assert_array_equal(res.total, _plain(upd, [i for i in range(n) if i not in gone]))
    # os.urandom path (fresh graph seed) agrees too.
    got = run_secagg(upd, CLIP, 6, drops, neighbours=12)
    np.testing.assert_array_equal(got, res.total)


def test_neighbours_at_least_cohort_is_complete_graph() -> None:
    upd = _updates(8, 50)
    plus = secure_sum(upd, CLIP, 5, neighbours=20, seed=2, dropouts={"masked_input": {1}})
    full = secure_sum(upd, CLIP, 5, seed=2, dropouts={"masked_input": {1}})
    np.testing.assert_array_equal(plus.total, full.total)
    assert plus.bytes_up["share_keys"] == full.bytes_up["share_keys"]


# --------------------------------------------------------------------------- graph


@pytest.mark.parametrize(("m", "k"), [(30, 6), (31, 6), (30, 5), (31, 5), (100, 14), (9, 8)])
def test_graph_regular_symmetric_connected(m: int, k: int) -> None:
    members = list(range(3, 3 + 2 * m, 2))  # non-contiguous ids
    adj = dict(neighbour_graph(members, k, SEED))
    assert set(adj) == set(members)
    for u, vs in adj.items():
        assert u not in vs and all(u in adj[v] for v in vs)
    degrees = {len(vs) for vs in adj.values()}
    if k >= m - 1:
        assert degrees == {m - 1}
    elif k % 2 == 0 or m % 2 == 0:
        assert degrees == {k}
    else:
        assert degrees <= {k, k + 1}
    assert _connected(adj)
    # Every party derives the same graph from (members, k, seed), whatever the order...
    assert dict(neighbour_graph(members[::-1], k, SEED)) == adj
    # ...and the seed really randomises it.
    if k < m - 1:
        assert dict(neighbour_graph(members, k, bytes(32))) != adj


def test_graph_survives_removing_fewer_than_k_nodes() -> None:
    adj = dict(neighbour_graph(range(50), 6, SEED))
    rng = np.random.default_rng(0)
    for _ in range(20):
        cut = set(rng.choice(50, size=5, replace=False).tolist())
        rest = {u: vs - cut for u, vs in adj.items() if u not in cut}
        assert _connected(rest)


def test_suggested_neighbours() -> None:
    assert suggested_neighbours(100) == 14
    assert suggested_neighbours(200) == 16
    assert suggested_neighbours(8) == 6
    assert suggested_neighbours(7) is None  # 2 * ceil(log2 7) = 6 >= 7 - 1: complete anyway


# --------------------------------------------------------------------------- broadcast checks


def _advertised(n: int, t: int, k: int | None, seed: int = 0) -> tuple[list, SecAggServer]:
    rng = np.random.default_rng(seed)
    clients = [
        SecAggClient(i, t, 20, rng.bytes, neighbours=k, graph_seed=SEED if k else None)
        for i in range(n)
    ]
    server = SecAggServer(t, 20, neighbours=k, graph_seed=SEED if k else None)
    for c in clients:
        server.receive_advertise(c.advertise())
    return clients, server


def test_client_accepts_full_and_restricted_views() -> None:
    clients, server = _advertised(20, 3, 4)
    bcast = server.close_advertise()
    view = bcast.for_client(0)
    assert {k.client_id for k in view.keys} == server.neighbours_of(0) | {0}
    msg = clients[0].share_keys(view)
    assert {es.recipient for es in msg.shares} == server.neighbours_of(0)
    msg1 = clients[1].share_keys(bcast)  # the full broadcast also works
    assert {es.recipient for es in msg1.shares} == server.neighbours_of(1)


def _tampered_views(bcast: KeyBroadcast, nbr: int) -> dict[str, KeyBroadcast]:
    view = bcast.for_client(0)
    return {
        "missing neighbour key": KeyBroadcast(
            tuple(k for k in view.keys if k.client_id != nbr),
            view.members,
            view.neighbours,
            view.graph_seed,
        ),
        "other degree": KeyBroadcast(view.keys, view.members, 6, view.graph_seed),
        "other seed": KeyBroadcast(view.keys, view.members, view.neighbours, bytes(32)),
        "short seed": KeyBroadcast(view.keys, view.members, view.neighbours, b"x"),
        "member dropped": KeyBroadcast(
            view.keys, tuple(m for m in view.members if m != 0), view.neighbours, view.graph_seed
        ),
        "unsorted members": KeyBroadcast(
            view.keys, view.members[::-1], view.neighbours, view.graph_seed
        ),
        "foreign key": KeyBroadcast(
            (*view.keys, AdvertiseKeys(99, b"a" * 32, b"b" * 32)),
            view.members,
            view.neighbours,
            view.graph_seed,
        ),
        "complete graph sent": KeyBroadcast(bcast.keys),
    }


def test_client_rejects_inconsistent_graph_broadcast() -> None:
    n, k, t = 20, 4, 3
    _, server = _advertised(n, t, k)
    bcast = server.close_advertise()
    nbr = min(server.neighbours_of(0))
    for name, bad in _tampered_views(bcast, nbr).items():
        fresh, _ = _advertised(n, t, k)  # same rng seed -> same keys as the server saw
        with pytest.raises(ProtocolError):
            fresh[0].share_keys(bad)
            print(f"accepted a broadcast with {name}")  # only reached on failure
    complete_client, _ = _advertised(n, t, None)
    with pytest.raises(ProtocolError):
        complete_client[0].share_keys(bcast)


def test_server_and_client_refuse_non_neighbour_shares() -> None:
    clients, server = _advertised(20, 3, 4)
    bcast = server.close_advertise()
    stranger = min(set(range(1, 20)) - server.neighbours_of(0))
    fake = EncryptedShare(0, stranger, b"\x00" * 12, b"\x00" * 136)
    with pytest.raises(ProtocolError):
        server.receive_share_keys(ShareKeysMsg(0, (fake,)))
    clients[stranger].share_keys(bcast)
    with pytest.raises(ProtocolError):
        clients[stranger].masked_input(
            RoutedShares(stranger, (EncryptedShare(0, stranger, b"", b""),)),
            np.zeros(20, np.uint32),
        )


# --------------------------------------------------------------------------- aborts


def test_neighbourhood_below_threshold_aborts_at_share_keys() -> None:
    n, k, t = 30, 4, 3
    server = SecAggServer(t, 10, neighbours=k, graph_seed=SEED)
    graph = neighbour_graph(range(n), k, SEED)
    victim_nbrs = sorted(graph[0])[:3]  # client 0 keeps 1 neighbour + itself = 2 < t
    rng = np.random.default_rng(1)
    clients = {i: SecAggClient(i, t, 10, rng.bytes, neighbours=k) for i in range(n)}
    for c in clients.values():
        server.receive_advertise(c.advertise())
    bcast = server.close_advertise()
    for i in range(n):
        if i not in victim_nbrs:
            server.receive_share_keys(clients[i].share_keys(bcast.for_client(i)))
    with pytest.raises(SecAggAborted) as ei:
        server.close_share_keys()
    assert ei.value.stage == "share_keys" and ei.value.alive < t


@pytest.mark.parametrize("stage", ["masked_input", "unmasking"])
def test_neighbourhood_below_threshold_aborts_later(stage: str) -> None:
    n, k, t, p = 30, 4, 3, 10
    rng = np.random.default_rng(2)
    clients = {i: SecAggClient(i, t, p, rng.bytes, neighbours=k) for i in range(n)}
    server = SecAggServer(t, p, neighbours=k, graph_seed=SEED)
    for c in clients.values():
        server.receive_advertise(c.advertise())
    bcast = server.close_advertise()
    for c in clients.values():
        server.receive_share_keys(c.share_keys(bcast.for_client(c.client_id)))
    routed = server.close_share_keys()
    silent = set(sorted(server.neighbours_of(0))[:3])
    x = np.zeros(p, np.uint32)
    for i, c in clients.items():
        if stage == "unmasking" or i not in silent:
            server.receive_masked_input(c.masked_input(routed[i], x))
    if stage == "masked_input":
        with pytest.raises(SecAggAborted) as ei:
            server.close_masked_input()
    else:
        req = server.close_masked_input()
        for i in req.survivors:
            if i not in silent:
                server.receive_unmask(clients[i].unmask(req))
        with pytest.raises(SecAggAborted) as ei:
            server.close_unmasking()
    assert ei.value.stage == stage and ei.value.alive < t <= n - len(silent)


def test_secure_sum_aborts_when_a_neighbourhood_collapses() -> None:
    n, k, t = 30, 4, 4
    seed = 21
    graph_seed = np.random.default_rng(seed).bytes(32)  # secure_sum's first draw
    nbrs = neighbour_graph(range(n), k, graph_seed)[5]
    drops = {"masked_input": set(sorted(nbrs)[:2])}
    with pytest.raises(SecAggAborted):
        secure_sum(_updates(n, 10), CLIP, t, dropouts=drops, neighbours=k, seed=seed)
    # The same dropouts on the complete graph are harmless.
    res = secure_sum(_updates(n, 10), CLIP, t, dropouts=drops, seed=seed)
    assert len(res.survivors) == n - 2


def test_disconnected_survivor_graph_aborts_before_unmasking() -> None:
    n, seed = 12, 8
    cycle = neighbour_graph(range(n), 2, np.random.default_rng(seed).bytes(32))
    order = [0]
    while len(order) < n:  # walk the ring
        order.append(min(cycle[order[-1]] - set(order[-2:])))
    # Two non-adjacent dropouts: every threshold still holds, but the ring splits in two.
    drops = {"masked_input": {order[2], order[7]}}
    with pytest.raises(SecAggAborted, match="disconnected") as ei:
        secure_sum(_updates(n, 10), CLIP, 2, dropouts=drops, neighbours=2, seed=seed)
    assert ei.value.stage == "masked_input" and ei.value.alive < n - 2
    res = secure_sum(
        _updates(n, 10), CLIP, 2, dropouts={"masked_input": {order[2]}}, neighbours=2, seed=seed
    )
    assert len(res.survivors) == n - 1


# --------------------------------------------------------------------------- privacy


def test_secagg_plus_masked_vector_looks_uniform() -> None:
    p, n, k, t = 4096, 16, 4, 3
    rng = np.random.default_rng(3)
    clients = [SecAggClient(i, t, p, rng.bytes, neighbours=k) for i in range(n)]
    server = SecAggServer(t, p, neighbours=k, graph_seed=SEED)
    for c in clients:
        server.receive_advertise(c.advertise())
    bcast = server.close_advertise()
    for c in clients:
        server.receive_share_keys(c.share_keys(bcast.for_client(c.client_id)))
    routed = server.close_share_keys()
    x = np.full(p, 7, dtype=np.uint32)
    y = clients[0].masked_input(routed[0], x).y
    assert y.dtype == np.uint32 and not np.array_equal(x, y)
    counts = np.bincount((y >> 24).astype(np.int64), minlength=256)
    assert chisquare(counts).pvalue > 0.001
    low = np.bincount((y & 0xFF).astype(np.int64), minlength=256)
    assert chisquare(low).pvalue > 0.001


# --------------------------------------------------------------------------- accounting


@pytest.mark.parametrize("k", [None, 6])
def test_secure_sum_sets_and_byte_counts(k: int | None) -> None:
    n, p, t = 16, 64, 4
    upd = _updates(n, p)
    drops = {"advertise": {0}, "share_keys": {1}, "masked_input": {2}, "unmasking": {3}}
    res = secure_sum(upd, CLIP, t, dropouts=drops, neighbours=k, seed=4)
    u1 = [i for i in range(n) if i != 0]
    u2 = [i for i in u1 if i != 1]
    u3 = [i for i in u2 if i != 2]
    assert res.survivors == tuple(u3) and res.dropped == (0, 1, 2) and res.excluded == {}
    np.testing.assert_array_equal(res.total, _plain(upd, u3))
    graph = (
        {u: frozenset(u1) - {u} for u in u1}
        if k is None
        else neighbour_graph(u1, k, np.random.default_rng(4).bytes(32))
    )
    share = 4 + 12 + 24 + 22 * 4 + 16  # id, nonce, AES-GCM(header + 22 field elements) + tag
    assert res.bytes_up["advertise"] == 64 * len(u1)
    assert res.bytes_up["share_keys"] == share * sum(len(graph[u]) for u in u2)
    assert res.bytes_up["masked_input"] == 4 * p * len(u3)
    responders = [u for u in u3 if u != 3]
    revealed = sum(len((graph[u] | {u}) & set(u2)) for u in responders)
    assert res.bytes_up["unmasking"] == (8 + 11 * 4) * revealed
    if k is None:
        assert res.bytes_down["advertise"] == len(u1) * 68 * len(u1)
    else:
        per = [68 * (len(graph[u]) + 1) + 4 * len(u1) + 32 + 4 for u in u1]
        assert res.bytes_down["advertise"] == sum(per)
    assert res.bytes_down["share_keys"] == share * sum(len(graph[u] & set(u2)) for u in u2)
    assert res.bytes_down["masked_input"] == 4 * len(u2) * len(u3)
    assert res.bytes_down["unmasking"] == 0
    assert res.seconds_client > 0 and res.seconds_server > 0


def test_secagg_plus_uses_fewer_bytes_than_complete() -> None:
    upd = _updates(40, 32)
    full = secure_sum(upd, CLIP, 7, seed=1)
    plus = secure_sum(upd, CLIP, 7, neighbours=8, seed=1)
    np.testing.assert_array_equal(full.total, plus.total)
    assert plus.bytes_up["share_keys"] * 4 < full.bytes_up["share_keys"]
    assert plus.bytes_down["advertise"] * 2 < full.bytes_down["advertise"]
    assert plus.bytes_up["masked_input"] == full.bytes_up["masked_input"] == 4 * 32 * 40


@pytest.mark.parametrize("k", [None, 8])
def test_tampered_vectors_are_excluded(k: int | None, caplog: pytest.LogCaptureFixture) -> None:
    n, p, t = 20, 40, 5
    upd = _updates(n, p)
    tamper = {
        3: lambda y: y.astype(np.float64) * 1e9,
        5: lambda y: y[:-1],
        7: lambda y: y.tobytes(),
    }
    with caplog.at_level(logging.WARNING):
        res = secure_sum(upd, CLIP, t, neighbours=k, seed=6, tamper=tamper)
    assert set(res.excluded) == {3, 5, 7}
    assert "dtype" in res.excluded[3] and "shape" in res.excluded[5]
    assert "ndarray" in res.excluded[7]
    assert sum("excluding client" in r.message for r in caplog.records) == 3
    rest = [i for i in range(n) if i not in {3, 5, 7}]
    assert res.survivors == tuple(rest) and res.dropped == ()
    np.testing.assert_array_equal(res.total, _plain(upd, rest))
    # 4*P for each valid vector and for the float64 one is 8*P; bytes count too.
    assert res.bytes_up["masked_input"] == 4 * p * (n - 3) + 8 * p + 4 * (p - 1) + 4 * p


def test_too_many_tampered_aborts() -> None:
    tamper = {i: (lambda y: y[:1]) for i in range(5)}
    with pytest.raises(SecAggAborted) as ei:
        secure_sum(_updates(8, 10), CLIP, 4, seed=0, tamper=tamper)
    assert ei.value.stage == "masked_input" and ei.value.alive == 3


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("n", "t", "k", "bits", "needle"),
    [
        (10, 11, None, 16, "cohort size 10"),
        (10, 0, None, 16, "threshold must be >= 1"),
        (100, 9, 6, 16, "neighbourhood size 7"),
        (100, 5, 1, 16, "neighbours=1"),
        (2**16, 3, None, 16, "wrap"),
        (10, 3, None, 40, "bits"),
    ],
)
def test_check_secagg_params_messages(
    n: int, t: int, k: int | None, bits: int, needle: str
) -> None:
    with pytest.raises(ValueError, match=needle):
        check_secagg_params(n, t, k, bits)


def test_check_secagg_params_accepts_sane_settings() -> None:
    check_secagg_params(200, 101, None, 16)
    check_secagg_params(200, 9, 16, 16)
    check_secagg_params(5, 5, 14, 16)  # k beyond the cohort: complete graph, t <= n
    with pytest.raises(ValueError, match="neighbourhood"):
        secure_sum(_updates(30, 4), CLIP, 8, neighbours=4)


# --------------------------------------------------------------------------- batched Shamir


def test_batch_shamir_any_t_rebuild_and_t_minus_one_fails() -> None:
    rng = np.random.default_rng(12)
    secrets = [rng.bytes(32), rng.bytes(32), b"\xff" * 7]
    lengths = [len(s) for s in secrets]
    xs = [3, 9, 10, 41, 77, 200]
    t = 4
    rows = share_bytes_batch(secrets, t, xs, rng.bytes)
    assert rows.dtype == np.uint32 and rows.shape == (6, sum(batch_chunks(n) for n in lengths))
    assert int(rows.max()) < SMALL_PRIME
    for pick in ([0, 1, 2, 3], [5, 3, 1, 0], [1, 2, 4, 5], [0, 1, 2, 3, 4, 5]):
        got = reconstruct_bytes_batch([xs[i] for i in pick], rows[pick], lengths)
        assert got == secrets
    try:  # t - 1 shares give garbage (usually not even a valid encoding)
        bad: list[bytes] | None = reconstruct_bytes_batch(xs[:3], rows[:3], lengths)
    except ValueError:
        bad = None
    assert bad != secrets
    corrupt = rows[:4].copy()
    corrupt[0, 0] = SMALL_PRIME
    with pytest.raises(ValueError, match="out of range"):
        reconstruct_bytes_batch(xs[:4], corrupt, lengths)


def test_batch_shamir_share_values_look_uniform() -> None:
    rng = np.random.default_rng(13)
    rows = share_bytes_batch([bytes(32)] * 200, 3, [1, 2, 3], rng.bytes)  # all-zero secrets
    counts = np.bincount((rows[:2].ravel() >> 27).astype(np.int64), minlength=16)  # t-1 rows
    assert chisquare(counts).pvalue > 0.001
