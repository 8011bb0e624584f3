"""Payloads over a real gRPC connection: a 200 MB tensor streamed in chunks, message limits."""

from __future__ import annotations

import hashlib
import resource
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
import numpy as np
import pytest

from fedmetamal.net.payload import (
    MAX_MESSAGE_BYTES,
    PayloadError,
    decode_stream,
    encode,
    grpc_options,
)
from fedmetamal.v1 import common_pb2

SERVICE = "fedmetamal.test.PayloadTest"
N_BIG = 50_000_000  # float32: 200 MB
BLOCK = 1 << 20


def _big_tensor() -> np.ndarray:
    """Values (i % 65521) / 8, written block by block so no 64-bit temporary of 400 MB exists."""
    out = np.empty(N_BIG, dtype=np.float32)
    for start in range(0, N_BIG, BLOCK):
        stop = min(start + BLOCK, N_BIG)
        np.divide(np.arange(start, stop, dtype=np.int64) % 65521, 8, out=out[start:stop])
    return out


def _expected_slice(start: int, stop: int) -> np.ndarray:
    return ((np.arange(start, stop, dtype=np.int64) % 65521) / 8).astype(np.float32)


@contextmanager
def _server(handlers: dict[str, grpc.RpcMethodHandler], options: list[tuple[str, int]]):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def _download_handler(make: object) -> grpc.RpcMethodHandler:
    return grpc.unary_stream_rpc_method_handler(
        make,
        request_deserializer=common_pb2.PayloadChunk.FromString,
        response_serializer=common_pb2.PayloadChunk.SerializeToString,
    )


def _download(channel: grpc.Channel) -> grpc.UnaryStreamMultiCallable:
    return channel.unary_stream(
        f"/{SERVICE}/Download",
        request_serializer=common_pb2.PayloadChunk.SerializeToString,
        response_deserializer=common_pb2.PayloadChunk.FromString,
    )


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def test_200mb_tensor_streams_through_grpc() -> None:
    rss_before = _peak_rss_bytes()
    big = _big_tensor()
    want_sha = hashlib.sha256(big).digest()

    def download(
        request: common_pb2.PayloadChunk, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.PayloadChunk]:
        yield from encode({"weights": big, "step": np.array(7, dtype=np.int64)})

    with (
        _server({"Download": _download_handler(download)}, grpc_options()) as address,
        grpc.insecure_channel(address, options=grpc_options()) as channel,
    ):
        out = decode_stream(
            _download(channel)(common_pb2.PayloadChunk(), timeout=120),
            expected={"weights": ("float32", (N_BIG,)), "step": ("int64", ())},
        )

    got = out["weights"]
    assert got.dtype == np.float32 and got.shape == (N_BIG,)
    assert int(out["step"]) == 7
    for start in (0, 65_000, 31_415_926, N_BIG - 1000):
        np.testing.assert_array_equal(
            got[start : start + 1000], _expected_slice(start, start + 1000)
        )
    assert hashlib.sha256(got).digest() == want_sha
    # Source (200 MB) + one receive buffer (200 MB) + slack; a concatenated copy of the payload
    # on either end would add another 200 MB.
    growth = _peak_rss_bytes() - rss_before
    print(f"peak RSS growth {growth / 2**20:.0f} MiB")
    assert growth < 600 * 1024 * 1024


def test_upload_through_grpc_with_chunks_within_the_limit() -> None:
    """Client streaming, as UploadResult is used: the server decodes with decode_stream."""
    tensors = {
        "delta": np.linspace(-1, 1, 3_000_001, dtype=np.float32),
        "counts": np.arange(12, dtype=np.int64).reshape(3, 4),
    }
    received: dict[str, np.ndarray] = {}

    def upload(chunks: Iterator[common_pb2.PayloadChunk], context: grpc.ServicerContext):
        received.update(decode_stream(chunks, max_bytes=64 << 20))
        return common_pb2.PayloadChunk(data=b"ok")

    handler = grpc.stream_unary_rpc_method_handler(
        upload,
        request_deserializer=common_pb2.PayloadChunk.FromString,
        response_serializer=common_pb2.PayloadChunk.SerializeToString,
    )
    with (
        _server({"Upload": handler}, grpc_options()) as address,
        grpc.insecure_channel(address, options=grpc_options()) as channel,
    ):
        call = channel.stream_unary(
            f"/{SERVICE}/Upload",
            request_serializer=common_pb2.PayloadChunk.SerializeToString,
            response_deserializer=common_pb2.PayloadChunk.FromString,
        )
        assert call(encode(tensors), timeout=60).data == b"ok"
    assert list(received) == ["delta", "counts"]
    for name, array in tensors.items():
        np.testing.assert_array_equal(received[name], array)


def test_server_refuses_a_message_over_the_limit() -> None:
    """The client may send 64 MB messages; the server, built with grpc_options(), refuses 9 MB."""
    calls: list[int] = []

    def upload(chunks: Iterator[common_pb2.PayloadChunk], context: grpc.ServicerContext):
        for chunk in chunks:
            calls.append(len(chunk.data))
        return common_pb2.PayloadChunk()

    handler = grpc.stream_unary_rpc_method_handler(
        upload,
        request_deserializer=common_pb2.PayloadChunk.FromString,
        response_serializer=common_pb2.PayloadChunk.SerializeToString,
    )
    huge = common_pb2.PayloadChunk(data=bytes(9 << 20))
    assert huge.ByteSize() > MAX_MESSAGE_BYTES
    with (
        _server({"Upload": handler}, grpc_options()) as address,
        grpc.insecure_channel(address, options=grpc_options(64 << 20)) as channel,
    ):
        call = channel.stream_unary(
            f"/{SERVICE}/Upload",
            request_serializer=common_pb2.PayloadChunk.SerializeToString,
            response_deserializer=common_pb2.PayloadChunk.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            call(iter([huge]), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 9 << 20 not in calls


def test_client_refuses_a_message_over_the_limit() -> None:
    """The server may send 64 MB messages; the channel, built with grpc_options(), refuses 9 MB."""

    def download(request: common_pb2.PayloadChunk, context: grpc.ServicerContext):
        yield common_pb2.PayloadChunk(data=bytes(9 << 20))

    with (
        _server({"Download": _download_handler(download)}, grpc_options(64 << 20)) as address,
        grpc.insecure_channel(address, options=grpc_options()) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        decode_stream(_download(channel)(common_pb2.PayloadChunk(), timeout=30))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_hostile_stream_over_grpc_is_a_payload_error() -> None:
    """A server that announces a huge payload is refused before the client allocates it."""

    def download(request: common_pb2.PayloadChunk, context: grpc.ServicerContext):
        spec = common_pb2.TensorSpec(name="w", dtype="float64", shape=[1 << 40])
        yield common_pb2.PayloadChunk(
            header=common_pb2.PayloadHeader(tensors=[spec], total_bytes=8 << 40, sha256=bytes(32))
        )

    with (
        _server({"Download": _download_handler(download)}, grpc_options()) as address,
        grpc.insecure_channel(address, options=grpc_options()) as channel,
        pytest.raises(PayloadError, match="the limit is 1073741824 bytes"),
    ):
        decode_stream(_download(channel)(common_pb2.PayloadChunk(), timeout=30))
