"""Tests for Bonawitz secure aggregation, Shamir sharing and the Z_{2^32} encoding."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
from scipy.stats import chisquare

from fedmetamal.privacy import secagg_ring
from fedmetamal.privacy.secagg import (
    MaskedInput,
    ProtocolError,
    RoutedShares,
    SecAggAborted,
    SecAggClient,
    SecAggServer,
    UnmaskRequest,
    run_secagg,
)
from fedmetamal.privacy.shamir import (
    PRIME,
    reconstruct_bytes,
    reconstruct_ints,
    share_bytes,
    share_ints,
)

CLIP = 0.5
P = 1000


def _updates(n: int, p: int = P, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.4, size=(n, p)).astype(np.float32)


def _expected(updates: np.ndarray, ids: list[int], bits: int = 16) -> tuple[np.ndarray, int]:
    q = sum(secagg_ring.quantise(updates[i], CLIP, bits).astype(np.int64) for i in ids)
    return q, len(ids)


@pytest.mark.parametrize(
    ("n", "t", "frac"), [(10, 6, 0.0), (10, 6, 0.1), (20, 11, 0.3), (10, 6, 0.3)]
)
def test_sum_exact_with_masked_input_dropouts(n: int, t: int, frac: float) -> None:
    upd = _updates(n)
    dropped = set(range(0, n, n // max(1, round(frac * n)))[: round(frac * n)]) if frac else set()
    assert len(dropped) == round(frac * n)
    got = run_secagg(upd, CLIP, t, {"masked_input": dropped}, seed=1)
    ids = [i for i in range(n) if i not in dropped]
    q, m = _expected(upd, ids)
    np.testing.assert_array_equal(got, secagg_ring.dequantise_sum(q, m, CLIP))
    clipped = np.clip(upd[ids].astype(np.float64), -CLIP, CLIP).sum(axis=0)
    assert np.max(np.abs(got - clipped)) <= secagg_ring.sum_error_bound(m, CLIP) + 1e-9


def test_dropouts_at_share_keys_and_unmasking() -> None:
    upd = _updates(10)
    drops = {"share_keys": {2}, "masked_input": {5}, "unmasking": {7}}
    got = run_secagg(upd, CLIP, 6, drops)  # os.urandom path
    q, m = _expected(upd, [i for i in range(10) if i not in {2, 5}])
    np.testing.assert_array_equal(got, secagg_ring.dequantise_sum(q, m, CLIP))


@pytest.mark.parametrize("stage", ["advertise", "share_keys", "masked_input", "unmasking"])
def test_too_few_survivors_aborts(stage: str) -> None:
    with pytest.raises(SecAggAborted) as ei:
        run_secagg(_updates(6, 50), CLIP, 4, {stage: {0, 1, 2}}, seed=2)
    assert ei.value.alive == 3 and ei.value.threshold == 4 and ei.value.stage == stage


def _drive_to_masked(
    n: int, t: int, p: int, seed: int = 3
) -> tuple[list[SecAggClient], SecAggServer, dict[int, RoutedShares]]:
    rng = np.random.default_rng(seed)
    clients = [SecAggClient(i, t, p, rng.bytes) for i in range(n)]
    server = SecAggServer(t, p)
    for c in clients:
        server.receive_advertise(c.advertise())
    bcast = server.close_advertise()
    for c in clients:
        server.receive_share_keys(c.share_keys(bcast))
    return clients, server, server.close_share_keys()


def test_masked_vector_looks_uniform() -> None:
    p = 4096
    clients, _, routed = _drive_to_masked(4, 3, p)
    x = np.full(p, 7, dtype=np.uint32)
    y = clients[0].masked_input(routed[0], x).y
    assert y.dtype == np.uint32 and not np.array_equal(x, y)
    counts = np.bincount((y >> 24).astype(np.int64), minlength=256)
    assert chisquare(counts).pvalue > 0.001


def test_malformed_vector_excluded(caplog: pytest.LogCaptureFixture) -> None:
    n, t, p = 8, 5, 200
    upd = _updates(n, p)
    clients, server, routed = _drive_to_masked(n, t, p)
    for c in clients:
        msg = c.masked_input(routed[c.client_id], secagg_ring.quantise(upd[c.client_id], CLIP))
        if c.client_id == 3:
            msg = MaskedInput(3, msg.y[:-1])
        if c.client_id == 6:
            msg = MaskedInput(6, msg.y.astype(np.int64))
        with caplog.at_level(logging.WARNING):
            server.receive_masked_input(msg)
    assert set(server.excluded) == {3, 6} and "shape" in server.excluded[3]
    req = server.close_masked_input()
    assert req.dropped == (3, 6)
    for i in req.survivors:
        server.receive_unmask(clients[i].unmask(req))
    total = server.close_unmasking()
    q, _ = _expected(upd, list(req.survivors))
    np.testing.assert_array_equal(total.astype(np.int64), q)


def test_client_refuses_both_secrets_for_one_client() -> None:
    clients, _server, routed = _drive_to_masked(5, 3, 10)
    for c in clients:
        c.masked_input(routed[c.client_id], np.zeros(10, dtype=np.uint32))
    with pytest.raises(ProtocolError):
        clients[0].unmask(UnmaskRequest(survivors=(0, 1, 2), dropped=(2, 3)))


def test_shamir_any_t_reconstruct_t_minus_one_fails() -> None:
    rng = np.random.default_rng(4)
    secret = int.from_bytes(rng.bytes(15), "big")
    n, t = 6, 4
    shares = share_ints([secret, 12345], t, list(range(1, n + 1)), rng.bytes)
    for sub in itertools.combinations(shares, t):
        assert reconstruct_ints(sub) == (secret, 12345)
    for sub in itertools.combinations(shares, t - 1):
        assert reconstruct_ints(sub)[0] != secret
    raw = rng.bytes(32)

    bs = share_bytes(raw, 3, [1, 2, 3, 4], rng.bytes)
    assert reconstruct_bytes(bs[1:], 32) == raw
    assert all(0 <= y < PRIME for s in bs for y in s.ys)


def test_ring_capacity_and_bound() -> None:
    with pytest.raises(ValueError):
        secagg_ring.check_capacity(2**16, 16)
    secagg_ring.check_capacity(2**16 - 1, 16)
    with pytest.raises(ValueError):
        run_secagg(np.zeros((2**16, 1), np.float32), CLIP, 2)
    x = np.linspace(-1, 1, 1001)
    q = secagg_ring.quantise(x, CLIP)
    err = np.abs(secagg_ring.dequantise_sum(q, 1, CLIP) - np.clip(x, -CLIP, CLIP))
    assert err.max() <= secagg_ring.sum_error_bound(1, CLIP) + 1e-12
    assert q.max() == 2**16 - 1 and q.min() == 0
