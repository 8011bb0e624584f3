"""How tensors and files travel over gRPC: raw little-endian bytes plus dtype and shape, cut into
chunks, checked against a SHA-256 and explicit size limits.

Nothing here pickles: a receiver only ever interprets bytes as one of ``ALLOWED_DTYPES``, so a
hostile peer can at worst send wrong numbers, never code. Senders slice memoryviews of each
tensor (no concatenated copy of the payload); receivers write into one preallocated buffer of the
announced size and return views on it, so peak memory stays about one payload.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from fedmetamal.errors import FedMetaMalError
from fedmetamal.v1 import common_pb2, control_pb2

if TYPE_CHECKING:
    import torch

CHUNK_BYTES = 1 << 20
MAX_MESSAGE_BYTES = 8 << 20
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 30

ALLOWED_DTYPES: frozenset[str] = frozenset(
    {
        "float16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "bool",
    }
)
MAX_NAME_CHARS = 200
MAX_DIMS = 8
# Largest byte count numpy can address (and that fits the uint64 total with room to spare).
_MAX_TENSOR_BYTES = (1 << 63) - 1
# Room left in one message beside a header, so a header never trips the message size limit.
_HEADER_MARGIN = 64 * 1024
_SHA256_BYTES = 32

# Keepalive for participants that long-poll from behind NAT: a ping every 30 s keeps the NAT
# mapping alive and detects a dead peer within 10 s more. The server must accept pings at that
# rate (min_ping_interval below 30 s) or it answers with GOAWAY "too_many_pings".
_KEEPALIVE_TIME_MS = 30_000
_KEEPALIVE_TIMEOUT_MS = 10_000
_MIN_PING_INTERVAL_MS = 20_000


class PayloadError(FedMetaMalError):
    """A tensor or file stream is malformed, too large, or does not match what was expected."""


def grpc_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """Channel and server options: explicit message size limits plus NAT-friendly keepalive.

    The same list serves both ends: the server-only ping policy option is ignored by channels,
    and the keepalive options merely make the server ping idle clients too.
    """
    if max_message_bytes <= 0:
        raise PayloadError(
            f"max_message_bytes must be positive, got {max_message_bytes}.",
            "Pass a byte count such as MAX_MESSAGE_BYTES.",
        )
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", _KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", _MIN_PING_INTERVAL_MS),
    ]


# --------------------------------------------------------------------------------------------
# Sending side


def _check_name(name: object, what: str = "tensor") -> str:
    if not isinstance(name, str) or not name:
        raise PayloadError(f"A {what} has an empty name.", f"Give every {what} a non-empty name.")
    if len(name) > MAX_NAME_CHARS:
        raise PayloadError(
            f"The {what} name {name[:40]!r}... is {len(name)} characters long; "
            f"the limit is {MAX_NAME_CHARS}.",
            f"Use a shorter {what} name.",
        )
    return name


def _dtype_problem(dtype_name: str, name: str) -> PayloadError:
    return PayloadError(
        f"Tensor {name!r} has dtype {dtype_name!r}, which cannot be sent.",
        f"Convert it to one of: {', '.join(sorted(ALLOWED_DTYPES))}.",
    )


def _as_array(name: str, value: Any) -> np.ndarray:
    """A C-contiguous little-endian numpy view (or copy when needed) of a tensor."""
    if not isinstance(value, np.ndarray):
        if hasattr(value, "detach") and hasattr(value, "numpy"):  # torch.Tensor
            try:
                value = value.detach().cpu().resolve_conj().resolve_neg().contiguous().numpy()
            except TypeError as exc:  # e.g. bfloat16 has no numpy equivalent
                raise _dtype_problem(str(getattr(value, "dtype", "?")), name) from exc
        else:
            value = np.asarray(value)
    if value.dtype.name not in ALLOWED_DTYPES:
        raise _dtype_problem(value.dtype.name, name)
    if value.ndim > MAX_DIMS:
        raise PayloadError(
            f"Tensor {name!r} has {value.ndim} dimensions; the limit is {MAX_DIMS}.",
            "Reshape it to fewer dimensions before sending.",
        )
    return value.astype(value.dtype.newbyteorder("<"), order="C", copy=False)


def _normalise(tensors: Mapping[str, np.ndarray | torch.Tensor]) -> list[tuple[str, np.ndarray]]:
    return [(_check_name(name), _as_array(name, value)) for name, value in tensors.items()]


def _byte_view(array: np.ndarray) -> memoryview:
    """The tensor's bytes as a flat memoryview, without copying."""
    return memoryview(array.reshape(-1).view(np.uint8))


def _header_of(arrays: list[tuple[str, np.ndarray]]) -> common_pb2.PayloadHeader:
    digest = hashlib.sha256()
    total = 0
    specs = []
    for name, array in arrays:
        digest.update(_byte_view(array))
        total += array.nbytes
        specs.append(common_pb2.TensorSpec(name=name, dtype=array.dtype.name, shape=array.shape))
    header = common_pb2.PayloadHeader(tensors=specs, total_bytes=total, sha256=digest.digest())
    size = header.ByteSize()
    if size > MAX_MESSAGE_BYTES - _HEADER_MARGIN:
        raise PayloadError(
            f"The payload header for {len(specs)} tensors is {size} bytes, too large for one "
            f"{MAX_MESSAGE_BYTES}-byte message.",
            "Send fewer, larger tensors (e.g. flatten parameters into one vector).",
        )
    return header


def _check_chunk_bytes(chunk_bytes: int) -> None:
    if not 0 < chunk_bytes <= MAX_MESSAGE_BYTES - _HEADER_MARGIN:
        raise PayloadError(
            f"chunk_bytes must be between 1 and {MAX_MESSAGE_BYTES - _HEADER_MARGIN}, "
            f"got {chunk_bytes}.",
            "Use CHUNK_BYTES.",
        )


def _chunks_of(views: Iterable[memoryview], chunk_bytes: int) -> Iterator[bytes]:
    """Cuts consecutive buffers into chunks of chunk_bytes (the last may be shorter).

    Small tensors share a chunk so a model of many little tensors is not sent as many tiny
    messages; each chunk is the only copy made.
    """
    pending = bytearray()
    for view in views:
        pos, size = 0, len(view)
        while pos < size:
            if not pending and size - pos >= chunk_bytes:
                yield bytes(view[pos : pos + chunk_bytes])
                pos += chunk_bytes
                continue
            take = min(chunk_bytes - len(pending), size - pos)
            pending += view[pos : pos + take]
            pos += take
            if len(pending) == chunk_bytes:
                yield bytes(pending)
                pending.clear()
    if pending:
        yield bytes(pending)


def payload_header(tensors: Mapping[str, np.ndarray | torch.Tensor]) -> common_pb2.PayloadHeader:
    """The header announcing ``tensors``: specs in mapping order, byte count and SHA-256."""
    return _header_of(_normalise(tensors))


def data_chunks(
    tensors: Mapping[str, np.ndarray | torch.Tensor], chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """The raw bytes of ``tensors`` in header order, in chunks of at most chunk_bytes."""
    _check_chunk_bytes(chunk_bytes)
    arrays = _normalise(tensors)
    return _chunks_of((_byte_view(a) for _, a in arrays), chunk_bytes)


def encode(
    tensors: Mapping[str, np.ndarray | torch.Tensor], chunk_bytes: int = CHUNK_BYTES
) -> Iterator[common_pb2.PayloadChunk]:
    """A PayloadChunk stream: the header, then the data chunks."""
    _check_chunk_bytes(chunk_bytes)
    arrays = _normalise(tensors)
    header = _header_of(arrays)

    def stream() -> Iterator[common_pb2.PayloadChunk]:
        yield common_pb2.PayloadChunk(header=header)
        for data in _chunks_of((_byte_view(a) for _, a in arrays), chunk_bytes):
            yield common_pb2.PayloadChunk(data=data)

    return stream()


# --------------------------------------------------------------------------------------------
# Receiving side


def _spec_bytes(spec: common_pb2.TensorSpec) -> int:
    """Validates one received spec and returns its byte count."""
    name = spec.name
    _check_name(name)
    if spec.dtype not in ALLOWED_DTYPES:
        raise PayloadError(
            f"Tensor {name!r} has dtype {spec.dtype[:40]!r}, which is not accepted.",
            f"Send one of: {', '.join(sorted(ALLOWED_DTYPES))}.",
        )
    shape = list(spec.shape)
    if len(shape) > MAX_DIMS:
        raise PayloadError(
            f"Tensor {name!r} has {len(shape)} dimensions; the limit is {MAX_DIMS}.",
            "Reshape it to fewer dimensions before sending.",
        )
    if any(d < 0 for d in shape):
        raise PayloadError(
            f"Tensor {name!r} has a negative dimension in shape {tuple(shape)}.",
            "Send a shape of non-negative sizes.",
        )
    itemsize = np.dtype(spec.dtype).itemsize
    # numpy refuses shapes whose non-zero dimensions overflow, even when one dimension is 0.
    addressable = itemsize
    for d in shape:
        addressable *= max(d, 1)
    if addressable > _MAX_TENSOR_BYTES:
        raise PayloadError(
            f"Tensor {name!r} with shape {tuple(shape)} overflows the byte count.",
            "Send a shape whose size fits in 2**63 bytes.",
        )
    count = itemsize
    for d in shape:
        count *= d
    return count


def _check_total(what: str, total: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise PayloadError(
            f"The {what} is {total} bytes; the limit is {max_bytes} bytes.",
            "Send a smaller payload, or raise the receiver's limit.",
        )


def _check_sha(sha: bytes, what: str) -> None:
    if len(sha) != _SHA256_BYTES:
        raise PayloadError(
            f"The {what} header's sha256 is {len(sha)} bytes long, not {_SHA256_BYTES}.",
            "Send the 32-byte SHA-256 digest of the data.",
        )


def _normalise_expected(
    expected: Mapping[str, tuple[str, tuple[int, ...]]] | None,
) -> dict[str, tuple[str, tuple[int, ...]]] | None:
    if expected is None:
        return None
    return {
        name: (np.dtype(dtype).name, tuple(int(d) for d in shape))
        for name, (dtype, shape) in expected.items()
    }


class PayloadReader:
    """Receives one tensor stream: ``header()``, then ``data()`` for each chunk, then ``finish()``.

    Every check raises PayloadError, so a server can turn any malformed upload into one clear
    refusal. Bytes go into one buffer allocated only once the header has validated.
    """

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        expected: Mapping[str, tuple[str, tuple[int, ...]]] | None = None,
    ) -> None:
        """``expected`` maps each tensor name, in stream order, to its (dtype, shape)."""
        self.max_bytes = max_bytes
        self.expected = _normalise_expected(expected)
        self._specs: list[tuple[str, str, tuple[int, ...], int]] | None = None
        self._buffer: bytearray | None = None
        self._view: memoryview | None = None
        self._sha = b""
        self._digest = hashlib.sha256()
        self._received = 0
        self._finished = False

    @property
    def total_bytes(self) -> int:
        """Bytes announced by the header (0 before it)."""
        return 0 if self._buffer is None else len(self._buffer)

    @property
    def bytes_received(self) -> int:
        """Bytes of data received so far."""
        return self._received

    def _check_open(self) -> None:
        if self._finished:
            raise PayloadError(
                "The payload stream continued after it was finished.",
                "Send exactly one header and its data per stream.",
            )

    def header(self, h: common_pb2.PayloadHeader) -> None:
        """Validates the header against the limits and ``expected``, then allocates the buffer."""
        self._check_open()
        if self._specs is not None:
            raise PayloadError(
                "The payload stream carried a second header.",
                "Send exactly one header, first, then only data chunks.",
            )
        specs: list[tuple[str, str, tuple[int, ...], int]] = []
        seen: set[str] = set()
        total = 0
        for spec in h.tensors:
            nbytes = _spec_bytes(spec)
            if spec.name in seen:
                raise PayloadError(
                    f"The payload names tensor {spec.name!r} twice.",
                    "Give every tensor a distinct name.",
                )
            seen.add(spec.name)
            specs.append((spec.name, spec.dtype, tuple(spec.shape), nbytes))
            total += nbytes
            _check_total("payload", total, self.max_bytes)
        if h.total_bytes != total:
            raise PayloadError(
                f"The payload header announces {h.total_bytes} bytes but its tensors need {total}.",
                "Set total_bytes to the sum of the tensors' byte counts.",
            )
        _check_sha(h.sha256, "payload")
        if self.expected is not None:
            self._check_expected(specs)
        self._specs = specs
        self._sha = h.sha256
        self._buffer = bytearray(total)
        self._view = memoryview(self._buffer)

    def _check_expected(self, specs: list[tuple[str, str, tuple[int, ...], int]]) -> None:
        assert self.expected is not None
        got = [s[0] for s in specs]
        want = list(self.expected)
        if got != want:
            # Order matters too: the bytes follow header order, so a reordered header would
            # reinterpret one tensor's bytes as another's.
            got_set = set(got)
            missing = [n for n in want if n not in got_set]
            unexpected = [n for n in got if n not in self.expected]
            raise PayloadError(
                f"The payload's tensors {got[:20]} do not match the expected {want[:20]} "
                f"in this order (missing {missing[:20]}, unexpected {unexpected[:20]}).",
                "Send exactly the tensors the task asked for, in its order.",
            )
        for name, dtype, shape, _ in specs:
            want_dtype, want_shape = self.expected[name]
            if (dtype, shape) != (want_dtype, want_shape):
                raise PayloadError(
                    f"Tensor {name!r}: expected {want_dtype} {want_shape}, got {dtype} {shape}.",
                    "Send the tensor with the dtype and shape the task asked for.",
                )

    def data(self, b: bytes) -> None:
        """Appends one data chunk."""
        self._check_open()
        if self._view is None:
            raise PayloadError(
                "Payload data arrived before its header.",
                "Send the PayloadHeader first, then the data chunks.",
            )
        end = self._received + len(b)
        if end > len(self._view):
            raise PayloadError(
                f"The payload sent more than the {len(self._view)} bytes its header announced.",
                "Send exactly total_bytes of data after the header.",
            )
        self._view[self._received : end] = b
        self._digest.update(b)
        self._received = end

    def finish(self) -> dict[str, np.ndarray]:
        """Checks the byte count and SHA-256; returns writable arrays viewing the buffer."""
        self._check_open()
        self._finished = True
        if self._specs is None or self._buffer is None:
            raise PayloadError(
                "The payload stream ended without a header.",
                "Send the PayloadHeader first, then the data chunks.",
            )
        if self._received != len(self._buffer):
            raise PayloadError(
                f"The payload stream ended after {self._received} of the {len(self._buffer)} "
                "bytes its header announced.",
                "Send all the data; the connection may have been cut, so retry.",
            )
        if not hmac.compare_digest(self._digest.digest(), self._sha):
            raise PayloadError(
                "The payload's SHA-256 does not match its header: the data was corrupted.",
                "Retry the transfer.",
            )
        out: dict[str, np.ndarray] = {}
        offset = 0
        for name, dtype_name, shape, nbytes in self._specs:
            dtype = np.dtype(dtype_name).newbyteorder("<")
            count = nbytes // dtype.itemsize
            array = np.frombuffer(self._buffer, dtype=dtype, count=count, offset=offset)
            if dtype_name == "bool" and count and np.any(array.view(np.uint8) > 1):
                raise PayloadError(
                    f"Tensor {name!r} is bool but holds bytes other than 0 and 1.",
                    "Send bool tensors as bytes 0 and 1.",
                )
            out[name] = array.reshape(shape)
            offset += nbytes
        if self._view is not None:
            self._view.release()
            self._view = None
        return out


def _feed(reader: PayloadReader, chunk: common_pb2.PayloadChunk) -> None:
    part = chunk.WhichOneof("part")
    if part == "header":
        reader.header(chunk.header)
    elif part == "data":
        reader.data(chunk.data)
    else:
        raise PayloadError(
            "A payload chunk carried neither a header nor data.",
            "Set exactly one of header or data in every PayloadChunk.",
        )


def decode_stream(
    chunks: Iterable[common_pb2.PayloadChunk],
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    expected: Mapping[str, tuple[str, tuple[int, ...]]] | None = None,
) -> dict[str, np.ndarray]:
    """Reads a whole PayloadChunk stream into arrays (see PayloadReader)."""
    reader = PayloadReader(max_bytes=max_bytes, expected=expected)
    for chunk in chunks:
        _feed(reader, chunk)
    return reader.finish()


async def decode_stream_async(
    chunks: AsyncIterable[common_pb2.PayloadChunk],
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    expected: Mapping[str, tuple[str, tuple[int, ...]]] | None = None,
) -> dict[str, np.ndarray]:
    """decode_stream for grpc.aio streams."""
    reader = PayloadReader(max_bytes=max_bytes, expected=expected)
    async for chunk in chunks:
        _feed(reader, chunk)
    return reader.finish()


# --------------------------------------------------------------------------------------------
# Small tensors inside one message


def inline_tensor(name: str, array: np.ndarray | torch.Tensor) -> common_pb2.InlineTensor:
    """A small tensor packed into one message (summaries, histograms)."""
    _check_name(name)
    arr = _as_array(name, array)
    spec = common_pb2.TensorSpec(name=name, dtype=arr.dtype.name, shape=arr.shape)
    return common_pb2.InlineTensor(spec=spec, data=arr.tobytes())


def from_inline(msg: common_pb2.InlineTensor, max_bytes: int = 16 << 20) -> np.ndarray:
    """The array in an InlineTensor, validated like a stream (a writable copy)."""
    nbytes = _spec_bytes(msg.spec)
    _check_total(f"inline tensor {msg.spec.name!r}", nbytes, max_bytes)
    if len(msg.data) != nbytes:
        raise PayloadError(
            f"Inline tensor {msg.spec.name!r} carries {len(msg.data)} bytes but its spec "
            f"{msg.spec.dtype} {tuple(msg.spec.shape)} needs {nbytes}.",
            "Send exactly prod(shape) * itemsize bytes.",
        )
    dtype = np.dtype(msg.spec.dtype).newbyteorder("<")
    array = np.frombuffer(bytearray(msg.data), dtype=dtype).reshape(tuple(msg.spec.shape))
    if msg.spec.dtype == "bool" and np.any(array.view(np.uint8) > 1):
        raise PayloadError(
            f"Inline tensor {msg.spec.name!r} is bool but holds bytes other than 0 and 1.",
            "Send bool tensors as bytes 0 and 1.",
        )
    return array


# --------------------------------------------------------------------------------------------
# Files (exported models, reports)


def _check_filename(filename: str) -> None:
    """A bare file name: receivers may save under it, so no directories or traversal."""
    _check_name(filename, "file")
    if any(c in filename for c in "/\\\0") or filename in {".", ".."}:
        raise PayloadError(
            f"The file name {filename[:40]!r} is not a plain file name.",
            "Send a name without directories, slashes or NUL bytes.",
        )


def _check_media_type(media_type: str) -> None:
    if len(media_type) > MAX_NAME_CHARS:
        raise PayloadError(
            f"The media type is {len(media_type)} characters long; the limit is {MAX_NAME_CHARS}.",
            "Send a standard media type such as application/octet-stream.",
        )


def file_chunks(
    data: bytes | memoryview,
    filename: str,
    media_type: str,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[control_pb2.FileChunk]:
    """A FileChunk stream: the header (name, type, size, SHA-256), then data chunks."""
    _check_chunk_bytes(chunk_bytes)
    _check_filename(filename)
    _check_media_type(media_type)
    view = memoryview(data).cast("B")
    header = control_pb2.FileHeader(
        filename=filename,
        media_type=media_type,
        total_bytes=len(view),
        sha256=hashlib.sha256(view).digest(),
    )

    def stream() -> Iterator[control_pb2.FileChunk]:
        yield control_pb2.FileChunk(header=header)
        for chunk in _chunks_of([view], chunk_bytes):
            yield control_pb2.FileChunk(data=chunk)

    return stream()


def read_file_chunks(
    chunks: Iterable[control_pb2.FileChunk], max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> tuple[control_pb2.FileHeader, bytes]:
    """Reads a FileChunk stream, checking size limit, byte count and SHA-256."""
    header: control_pb2.FileHeader | None = None
    buffer: bytearray | None = None
    digest = hashlib.sha256()
    received = 0
    for chunk in chunks:
        part = chunk.WhichOneof("part")
        if part == "header":
            if header is not None:
                raise PayloadError(
                    "The file stream carried a second header.",
                    "Send exactly one header, first, then only data chunks.",
                )
            h = chunk.header
            _check_filename(h.filename)
            _check_media_type(h.media_type)
            _check_total(f"file {h.filename!r}", h.total_bytes, max_bytes)
            _check_sha(h.sha256, "file")
            header = h
            buffer = bytearray(h.total_bytes)
        elif part == "data":
            if buffer is None:
                raise PayloadError(
                    "File data arrived before its header.",
                    "Send the FileHeader first, then the data chunks.",
                )
            end = received + len(chunk.data)
            if end > len(buffer):
                raise PayloadError(
                    f"The file stream sent more than the {len(buffer)} bytes its header announced.",
                    "Send exactly total_bytes of data after the header.",
                )
            buffer[received:end] = chunk.data
            digest.update(chunk.data)
            received = end
        else:
            raise PayloadError(
                "A file chunk carried neither a header nor data.",
                "Set exactly one of header or data in every FileChunk.",
            )
    if header is None or buffer is None:
        raise PayloadError(
            "The file stream ended without a header.",
            "Send the FileHeader first, then the data chunks.",
        )
    if received != len(buffer):
        raise PayloadError(
            f"The file stream ended after {received} of the {len(buffer)} bytes its header "
            "announced.",
            "Send all the data; the connection may have been cut, so retry.",
        )
    if not hmac.compare_digest(digest.digest(), header.sha256):
        raise PayloadError(
            "The file's SHA-256 does not match its header: the data was corrupted.",
            "Retry the transfer.",
        )
    return header, bytes(buffer)
