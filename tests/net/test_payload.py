"""Tensor and file transport: round trips, every validation error, and hostile streams."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedmetamal.errors import FedMetaMalError
from fedmetamal.net.payload import (
    ALLOWED_DTYPES,
    CHUNK_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_MESSAGE_BYTES,
    PayloadError,
    PayloadReader,
    data_chunks,
    decode_stream,
    decode_stream_async,
    encode,
    file_chunks,
    from_inline,
    grpc_options,
    inline_tensor,
    payload_header,
    read_file_chunks,
)
from fedmetamal.v1 import common_pb2, control_pb2


def _sample(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.startswith("float"):
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, array in want.items():
        array = np.asarray(array)
        assert got[name].dtype.name == array.dtype.name, name
        assert got[name].shape == array.shape, name
        assert got[name].tobytes() == array.astype(array.dtype.newbyteorder("<")).tobytes(), name


def _spec(name: str, dtype: str, shape: Iterable[int]) -> common_pb2.TensorSpec:
    return common_pb2.TensorSpec(name=name, dtype=dtype, shape=list(shape))


def _header(specs: list[common_pb2.TensorSpec], total: int, sha: bytes) -> common_pb2.PayloadHeader:
    return common_pb2.PayloadHeader(tensors=specs, total_bytes=total, sha256=sha)


def _raises(match: str):
    return pytest.raises(PayloadError, match=match)


# --- constants and options -------------------------------------------------------------------


def test_constants_and_grpc_options() -> None:
    assert CHUNK_BYTES == 1 << 20
    assert MAX_MESSAGE_BYTES == 8 << 20
    assert DEFAULT_MAX_PAYLOAD_BYTES == 1 << 30
    assert issubclass(PayloadError, FedMetaMalError)
    assert set(ALLOWED_DTYPES) == {
        "float16", "float32", "float64", "int8", "int16", "int32", "int64",
        "uint8", "uint16", "uint32", "uint64", "bool",
    }  # fmt: skip
    opts = dict(grpc_options())
    assert opts["grpc.max_send_message_length"] == MAX_MESSAGE_BYTES
    assert opts["grpc.max_receive_message_length"] == MAX_MESSAGE_BYTES
    assert opts["grpc.keepalive_time_ms"] == 30_000
    assert opts["grpc.keepalive_timeout_ms"] == 10_000
    assert opts["grpc.keepalive_permit_without_calls"] == 1
    assert opts["grpc.http2.max_pings_without_data"] == 0
    # The server must accept the client's pings, or it sends GOAWAY too_many_pings.
    assert opts["grpc.http2.min_ping_interval_without_data_ms"] < opts["grpc.keepalive_time_ms"]
    assert dict(grpc_options(123))["grpc.max_receive_message_length"] == 123
    with _raises("positive"):
        grpc_options(0)


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", sorted(ALLOWED_DTYPES))
def test_round_trip_every_dtype(dtype: str) -> None:
    tensors = {
        "matrix": _sample(dtype, (7, 5)),
        "scalar": _sample(dtype, ()),
        "empty": _sample(dtype, (0, 4)),
        "cube": _sample(dtype, (2, 3, 4), seed=1),
    }
    chunks = list(encode(tensors, chunk_bytes=13))
    assert chunks[0].WhichOneof("part") == "header"
    assert all(c.WhichOneof("part") == "data" and 0 < len(c.data) <= 13 for c in chunks[1:])
    out = decode_stream(chunks)
    _assert_same(out, tensors)
    for array in out.values():
        assert array.flags.writeable


def _owner(array: np.ndarray) -> object:
    base: object = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def test_decoded_arrays_are_views_on_one_buffer() -> None:
    tensors = {"a": np.arange(100, dtype=np.float32), "b": np.arange(50, dtype=np.int64)}
    out = decode_stream(encode(tensors, chunk_bytes=64))
    owner = _owner(out["a"])
    assert isinstance(owner, bytearray) and len(owner) == 800
    assert _owner(out["b"]) is owner
    out["a"][0] = 42.0  # writable, no copy needed by callers that update in place
    assert owner[:4] == np.float32(42.0).tobytes()


def test_header_matches_bytes_and_specs() -> None:
    tensors = {"w": np.arange(6, dtype=np.float64).reshape(2, 3), "n": np.array(3, np.int32)}
    header = payload_header(tensors)
    assert [(s.name, s.dtype, tuple(s.shape)) for s in header.tensors] == [
        ("w", "float64", (2, 3)),
        ("n", "int32", ()),
    ]
    raw = tensors["w"].tobytes() + tensors["n"].tobytes()
    assert header.total_bytes == len(raw)
    assert header.sha256 == hashlib.sha256(raw).digest()
    assert b"".join(data_chunks(tensors, chunk_bytes=5)) == raw
    assert [len(c) for c in data_chunks(tensors, chunk_bytes=5)] == [5] * 10 + [2]


def test_small_tensors_share_chunks() -> None:
    tensors = {f"t{i}": np.full(3, i, dtype=np.uint8) for i in range(10)}
    assert [len(c) for c in data_chunks(tensors, chunk_bytes=8)] == [8, 8, 8, 6]
    _assert_same(decode_stream(encode(tensors, chunk_bytes=8)), tensors)


def test_empty_payload_is_header_only() -> None:
    assert decode_stream(encode({})) == {}
    chunks = list(encode({"e": np.zeros((3, 0), np.float32)}))
    assert len(chunks) == 1
    out = decode_stream(chunks)
    assert out["e"].shape == (3, 0) and out["e"].dtype == np.float32


def test_torch_inputs() -> None:
    weight = torch.arange(12, dtype=torch.float32, requires_grad=True).reshape(3, 4)
    tensors = {
        "weight": weight * 2,  # needs grad: must be detached, not refused
        "transposed": torch.arange(6, dtype=torch.int64).reshape(2, 3).t(),  # not contiguous
        "mask": torch.tensor([True, False, True]),
        "half": torch.tensor([1.5, -2.0], dtype=torch.float16),
    }
    out = decode_stream(encode(tensors, chunk_bytes=10))
    for name, tensor in tensors.items():
        np.testing.assert_array_equal(out[name], tensor.detach().numpy())
        assert out[name].dtype == tensor.detach().numpy().dtype


def test_torch_dtype_without_numpy_equivalent_is_refused() -> None:
    with _raises("bfloat16"):
        payload_header({"w": torch.zeros(3, dtype=torch.bfloat16)})


def test_big_endian_and_non_contiguous_inputs() -> None:
    native = np.arange(20, dtype=np.float64).reshape(4, 5)
    big = native.astype(">f8")
    strided = native[:, ::2]
    out = decode_stream(encode({"big": big, "strided": strided, "i": np.arange(3, dtype=">i4")}))
    assert out["big"].dtype.byteorder in ("<", "=")
    np.testing.assert_array_equal(out["big"], native)
    np.testing.assert_array_equal(out["strided"], strided)
    np.testing.assert_array_equal(out["i"], [0, 1, 2])
    # The wire carries little-endian bytes whatever the input's byte order.
    raw = b"".join(data_chunks({"big": big}))
    assert raw == native.astype("<f8").tobytes()


def test_sender_refuses_what_a_receiver_would() -> None:
    with _raises("object"):
        payload_header({"o": np.array(["a"], dtype=object)})
    with _raises("complex64"):
        list(data_chunks({"c": np.zeros(2, np.complex64)}))
    with _raises("9 dimensions"):
        encode({"deep": np.zeros((1,) * 9)})
    with _raises("empty name"):
        encode({"": np.zeros(1)})
    with _raises("limit is 200"):
        encode({"x" * 201: np.zeros(1)})
    with _raises("chunk_bytes"):
        encode({"a": np.zeros(1)}, chunk_bytes=0)
    with _raises("chunk_bytes"):
        list(data_chunks({"a": np.zeros(1)}, chunk_bytes=MAX_MESSAGE_BYTES))


def test_header_too_large_for_one_message() -> None:
    many = {f"{i:0>190}": np.zeros(0, np.uint8) for i in range(45_000)}
    with _raises("too large for one"):
        payload_header(many)


def test_async_decode() -> None:
    tensors = {"a": _sample("float32", (33,)), "b": _sample("uint16", (4, 4))}

    async def source() -> AsyncIterator[common_pb2.PayloadChunk]:
        for chunk in encode(tensors, chunk_bytes=16):
            await asyncio.sleep(0)
            yield chunk

    _assert_same(asyncio.run(decode_stream_async(source())), tensors)

    async def bad() -> AsyncIterator[common_pb2.PayloadChunk]:
        yield common_pb2.PayloadChunk(data=b"x")

    with _raises("before its header"):
        asyncio.run(decode_stream_async(bad()))


def test_reader_used_with_upload_chunks() -> None:
    """The lead wraps the same header and bytes in UploadChunk; the reader takes them apart."""
    from fedmetamal.v1 import federation_pb2

    tensors = {"delta": _sample("float32", (1000,))}
    stream = [
        federation_pb2.UploadChunk(
            header=federation_pb2.UploadHeader(task_id="t", payload=payload_header(tensors))
        )
    ] + [federation_pb2.UploadChunk(data=b) for b in data_chunks(tensors, chunk_bytes=999)]
    reader = PayloadReader(expected={"delta": ("float32", (1000,))})
    reader.header(stream[0].header.payload)
    assert reader.total_bytes == 4000 and reader.bytes_received == 0
    for chunk in stream[1:]:
        reader.data(chunk.data)
    _assert_same(reader.finish(), tensors)


def test_upload_header_without_payload_is_refused() -> None:
    from fedmetamal.v1 import federation_pb2

    with _raises("sha256 is 0 bytes"):
        PayloadReader().header(federation_pb2.UploadHeader(task_id="t").payload)


# --- validation errors -----------------------------------------------------------------------

GOOD = {"w": np.arange(10, dtype=np.float32), "b": np.array([1, 0, 1], dtype=bool)}


def _good_chunks(chunk_bytes: int = 8) -> list[common_pb2.PayloadChunk]:
    return list(encode(GOOD, chunk_bytes=chunk_bytes))


def _with_header(h: common_pb2.PayloadHeader, *data: bytes) -> list[common_pb2.PayloadChunk]:
    return [common_pb2.PayloadChunk(header=h)] + [common_pb2.PayloadChunk(data=d) for d in data]


def test_data_before_header() -> None:
    chunks = _good_chunks()
    with _raises("before its header"):
        decode_stream(chunks[1:] + chunks[:1])
    with _raises("before its header"):
        PayloadReader().data(b"")


def test_stream_without_header() -> None:
    with _raises("without a header"):
        decode_stream([])


def test_second_header() -> None:
    chunks = _good_chunks()
    with _raises("second header"):
        decode_stream(chunks[:2] + chunks[:1] + chunks[2:])


def test_chunk_with_no_part() -> None:
    chunks = _good_chunks()
    with _raises("neither a header nor data"):
        decode_stream([*chunks[:1], common_pb2.PayloadChunk(), *chunks[1:]])


def test_stream_after_finish() -> None:
    reader = PayloadReader()
    reader.header(payload_header({}))
    assert reader.finish() == {}
    with _raises("after it was finished"):
        reader.data(b"x")
    with _raises("after it was finished"):
        reader.finish()


SHA = bytes(32)


@pytest.mark.parametrize(
    ("specs", "match"),
    [
        ([_spec("", "float32", [1])], "empty name"),
        ([_spec("a", "float32", [1]), _spec("a", "float32", [1])], "'a' twice"),
        ([_spec("n" * 201, "float32", [1])], "201 characters long; the limit is 200"),
        ([_spec("a", "float128", [1])], "'float128'.*Send one of: bool, float16"),
        ([_spec("a", "object", [1])], "'object'"),
        ([_spec("a", "<f4", [1])], "'<f4'"),
        ([_spec("a", "float32", [2, -1])], "negative dimension"),
        ([_spec("a", "uint8", [1] * 9)], "9 dimensions; the limit is 8"),
        ([_spec("a", "float64", [2**62])], "overflows the byte count"),
        ([_spec("a", "uint8", [0, 2**40, 2**40])], "overflows the byte count"),
    ],
)
def test_hostile_specs(specs: list[common_pb2.TensorSpec], match: str) -> None:
    with _raises(match):
        PayloadReader().header(_header(specs, 4, SHA))


def test_total_bytes_must_equal_the_specs() -> None:
    with _raises("announces 5 bytes but its tensors need 4"):
        PayloadReader().header(_header([_spec("a", "float32", [1])], 5, SHA))
    with _raises("announces 0 bytes but its tensors need 4"):
        PayloadReader().header(_header([_spec("a", "float32", [1])], 0, SHA))


def test_total_over_the_limit() -> None:
    specs = [_spec("a", "float32", [100]), _spec("b", "float32", [100])]
    with _raises("is 800 bytes; the limit is 500 bytes"):
        PayloadReader(max_bytes=500).header(_header(specs, 800, SHA))
    # A header announcing far more than memory: refused before allocating anything.
    huge = [_spec("a", "float64", [2**40])]
    with _raises(f"the limit is {DEFAULT_MAX_PAYLOAD_BYTES} bytes"):
        PayloadReader().header(_header(huge, 8 * 2**40, SHA))


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_sha_field_must_be_32_bytes(length: int) -> None:
    with _raises(f"sha256 is {length} bytes long, not 32"):
        PayloadReader().header(_header([_spec("a", "uint8", [1])], 1, bytes(length)))


def test_expected_names_dtypes_shapes() -> None:
    header = payload_header(GOOD)
    ok = {"w": ("float32", (10,)), "b": ("bool", (3,))}
    PayloadReader(expected=ok).header(header)
    PayloadReader(expected={"w": (np.float32, [10]), "b": (np.bool_, [3])}).header(header)
    with _raises("in this order \\(missing \\[\\], unexpected \\[\\]\\)"):
        PayloadReader(expected={"b": ("bool", (3,)), "w": ("float32", (10,))}).header(header)
    with _raises("missing \\['x'\\], unexpected \\['b'\\]"):
        PayloadReader(expected={"w": ("float32", (10,)), "x": ("bool", (3,))}).header(header)
    with _raises("missing \\[\\], unexpected \\['b'\\]"):
        PayloadReader(expected={"w": ("float32", (10,))}).header(header)
    with _raises("Tensor 'w': expected float64 \\(10,\\), got float32 \\(10,\\)"):
        PayloadReader(expected={**ok, "w": ("float64", (10,))}).header(header)
    with _raises("Tensor 'b': expected bool \\(1, 3\\), got bool \\(3,\\)"):
        PayloadReader(expected={**ok, "b": ("bool", (1, 3))}).header(header)


def test_more_data_than_announced() -> None:
    chunks = _good_chunks()
    with _raises("more than the 43 bytes"):
        decode_stream([*chunks, common_pb2.PayloadChunk(data=b"\x00")])


def test_fewer_bytes_than_announced() -> None:
    chunks = _good_chunks()
    with _raises("after 40 of the 43 bytes"):
        decode_stream(chunks[:-1])
    with _raises("after 0 of the 43 bytes"):
        decode_stream(chunks[:1])


def test_sha_mismatch() -> None:
    chunks = _good_chunks()
    corrupt = bytearray(chunks[2].data)
    corrupt[0] ^= 1
    chunks[2] = common_pb2.PayloadChunk(data=bytes(corrupt))
    with _raises("SHA-256 does not match"):
        decode_stream(chunks)


def test_bool_bytes_other_than_zero_and_one() -> None:
    raw = bytes([0, 1, 2])
    header = _header([_spec("m", "bool", [3])], 3, hashlib.sha256(raw).digest())
    with _raises("bool but holds bytes other than 0 and 1"):
        decode_stream(_with_header(header, raw))


def test_hostile_header_never_allocates_before_validation() -> None:
    """A header of 2**40 elements of a zero-sized axis is fine; the allocation is 0 bytes."""
    raw = b""
    header = _header([_spec("z", "float32", [0, 2**40])], 0, hashlib.sha256(raw).digest())
    out = decode_stream(_with_header(header))
    assert out["z"].shape == (0, 2**40)


# --- inline tensors --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", sorted(ALLOWED_DTYPES))
def test_inline_round_trip(dtype: str) -> None:
    array = _sample(dtype, (3, 2))
    msg = inline_tensor("sums", array)
    assert msg.spec.name == "sums" and msg.spec.dtype == dtype
    out = from_inline(common_pb2.InlineTensor.FromString(msg.SerializeToString()))
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable and out.dtype.name == dtype


def test_inline_scalar_torch_and_big_endian() -> None:
    assert from_inline(inline_tensor("s", np.float64(2.5))).shape == ()
    np.testing.assert_array_equal(from_inline(inline_tensor("t", torch.arange(3))), [0, 1, 2])
    msg = inline_tensor("b", np.arange(3, dtype=">u2"))
    assert msg.data == np.arange(3, dtype="<u2").tobytes()


def test_inline_validation() -> None:
    msg = inline_tensor("h", np.arange(4, dtype=np.int32))
    bad = common_pb2.InlineTensor(spec=msg.spec, data=msg.data[:-1])
    with _raises("carries 15 bytes but its spec int32 \\(4,\\) needs 16"):
        from_inline(bad)
    with _raises("is 16 bytes; the limit is 8 bytes"):
        from_inline(msg, max_bytes=8)
    with _raises("'str'"):
        from_inline(common_pb2.InlineTensor(spec=_spec("x", "str", [1]), data=b"a"))
    with _raises("negative"):
        from_inline(common_pb2.InlineTensor(spec=_spec("x", "uint8", [-1]), data=b""))
    with _raises("empty name"):
        inline_tensor("", np.zeros(1))
    with _raises("bool but holds"):
        from_inline(common_pb2.InlineTensor(spec=_spec("x", "bool", [1]), data=b"\x07"))


# --- files -----------------------------------------------------------------------------------


def test_file_round_trip() -> None:
    data = bytes(range(256)) * 41
    chunks = list(file_chunks(data, "model.onnx", "application/onnx", chunk_bytes=1000))
    assert chunks[0].header.total_bytes == len(data)
    assert chunks[0].header.sha256 == hashlib.sha256(data).digest()
    assert all(len(c.data) <= 1000 for c in chunks[1:]) and len(chunks) == 12
    header, got = read_file_chunks(chunks)
    assert (header.filename, header.media_type, got) == ("model.onnx", "application/onnx", data)
    header, got = read_file_chunks(file_chunks(memoryview(data), "m.bin", "x/y"))
    assert got == data
    header, got = read_file_chunks(file_chunks(b"", "empty.txt", "text/plain"))
    assert got == b"" and header.total_bytes == 0


def test_file_validation() -> None:
    data = b"abcdefghij" * 10
    good = list(file_chunks(data, "f.bin", "application/octet-stream", chunk_bytes=30))
    with _raises("before its header"):
        read_file_chunks(good[1:])
    with _raises("without a header"):
        read_file_chunks([])
    with _raises("second header"):
        read_file_chunks(good[:1] + good)
    with _raises("neither a header nor data"):
        read_file_chunks([*good, control_pb2.FileChunk()])
    with _raises("more than the 100 bytes"):
        read_file_chunks([*good, control_pb2.FileChunk(data=b"x")])
    with _raises("after 90 of the 100 bytes"):
        read_file_chunks(good[:-1])
    with _raises("is 100 bytes; the limit is 99 bytes"):
        read_file_chunks(good, max_bytes=99)
    tampered = [*good[:2], control_pb2.FileChunk(data=b"X" * 30), *good[3:]]
    with _raises("SHA-256 does not match"):
        read_file_chunks(tampered)
    for name, match in [
        ("", "empty name"),
        ("../etc/passwd", "not a plain file name"),
        ("a\\b", "not a plain file name"),
        ("..", "not a plain file name"),
        ("f" * 201, "limit is 200"),
    ]:
        with _raises(match):
            list(file_chunks(b"x", name, "text/plain"))
        header = control_pb2.FileHeader(filename=name, total_bytes=0, sha256=SHA)
        with _raises(match):
            read_file_chunks([control_pb2.FileChunk(header=header)])
    header = control_pb2.FileHeader(filename="a", total_bytes=0, sha256=b"short")
    with _raises("sha256 is 5 bytes long"):
        read_file_chunks([control_pb2.FileChunk(header=header)])
    header = control_pb2.FileHeader(filename="a", media_type="m" * 201, sha256=SHA)
    with _raises("media type"):
        read_file_chunks([control_pb2.FileChunk(header=header)])


# --- hostile streams (property) --------------------------------------------------------------

HYPO_TENSORS = {
    "w": np.arange(12, dtype=np.float32).reshape(3, 4),
    "n": np.array(7, dtype=np.int64),
    "mask": np.array([True, False, True, True]),
    "empty": np.zeros((0, 2), dtype=np.uint16),
}
HYPO_EXPECTED = {k: (v.dtype.name, v.shape) for k, v in HYPO_TENSORS.items()}
HYPO_RAW = b"".join(v.tobytes() for v in HYPO_TENSORS.values())

dims = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.integers(-2, 20)
specs_st = st.builds(
    _spec,
    name=st.sampled_from(["w", "n", "mask", "empty", "", "x" * 201]) | st.text(max_size=5),
    dtype=st.sampled_from([*sorted(ALLOWED_DTYPES), "float128", "object", "", "<f4"]),
    shape=st.lists(dims, max_size=10),
)


def _mutate_header(
    data: st.DataObject, header: common_pb2.PayloadHeader
) -> common_pb2.PayloadHeader:
    h = common_pb2.PayloadHeader()
    h.CopyFrom(header)
    kind = data.draw(st.sampled_from(["total", "sha", "spec", "add", "remove", "shuffle"]))
    if kind == "total":
        h.total_bytes = data.draw(st.integers(0, 2**64 - 1) | st.integers(0, 100))
    elif kind == "sha":
        h.sha256 = data.draw(st.binary(max_size=40))
    elif kind == "spec":
        i = data.draw(st.integers(0, len(h.tensors) - 1))
        h.tensors[i].CopyFrom(data.draw(specs_st))
    elif kind == "add":
        h.tensors.append(data.draw(specs_st))
    elif kind == "remove":
        del h.tensors[data.draw(st.integers(0, len(h.tensors) - 1))]
    else:
        order = data.draw(st.permutations(list(range(len(h.tensors)))))
        specs = [h.tensors[i] for i in order]
        copies = [common_pb2.TensorSpec.FromString(s.SerializeToString()) for s in specs]
        del h.tensors[:]
        h.tensors.extend(copies)
    return h


def _mutate(data: st.DataObject) -> list[common_pb2.PayloadChunk]:
    chunks = list(encode(HYPO_TENSORS, chunk_bytes=data.draw(st.integers(1, 40))))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(
            st.sampled_from(
                ["drop", "dup", "truncate", "swap", "flip", "header", "empty", "insert_header"]
            )
        )
        if not chunks:
            break
        i = data.draw(st.integers(0, len(chunks) - 1))
        if op == "drop":
            del chunks[i]
        elif op == "dup":
            chunks.insert(i, chunks[i])
        elif op == "truncate" and chunks[i].WhichOneof("part") == "data":
            cut = data.draw(st.integers(0, len(chunks[i].data)))
            chunks[i] = common_pb2.PayloadChunk(data=chunks[i].data[:cut])
        elif op == "swap":
            j = data.draw(st.integers(0, len(chunks) - 1))
            chunks[i], chunks[j] = chunks[j], chunks[i]
        elif op == "flip" and chunks[i].WhichOneof("part") == "data" and chunks[i].data:
            raw = bytearray(chunks[i].data)
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
            chunks[i] = common_pb2.PayloadChunk(data=bytes(raw))
        elif op == "header" and chunks[i].WhichOneof("part") == "header":
            chunks[i] = common_pb2.PayloadChunk(header=_mutate_header(data, chunks[i].header))
        elif op == "empty":
            chunks.insert(i, common_pb2.PayloadChunk())
        elif op == "insert_header":
            chunks.insert(i, common_pb2.PayloadChunk(header=payload_header(HYPO_TENSORS)))
    return chunks


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_streams_decode_exactly_or_raise_payload_error(data: st.DataObject) -> None:
    """With expected specs (how the server reads uploads): the original or a PayloadError."""
    chunks = _mutate(data)
    try:
        out = decode_stream(chunks, max_bytes=1 << 20, expected=HYPO_EXPECTED)
    except PayloadError:
        return
    assert set(out) == set(HYPO_TENSORS)
    for name, array in HYPO_TENSORS.items():
        assert out[name].dtype == array.dtype and out[name].shape == array.shape
        assert out[name].tobytes() == array.tobytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_streams_without_expected_keep_the_bytes(data: st.DataObject) -> None:
    """Without expected specs, metadata may be relabelled but the bytes are always the sent ones."""
    chunks = _mutate(data)
    try:
        out = decode_stream(chunks, max_bytes=1 << 20)
    except PayloadError:
        return
    assert b"".join(a.tobytes() for a in out.values()) == HYPO_RAW
    for name, array in out.items():
        assert 0 < len(name) <= 200 and array.dtype.name in ALLOWED_DTYPES and array.ndim <= 8
