"""``DetectService``: one uploaded file -> the feature vector a model takes.

The browser scores the vector itself (onnxruntime-web); the server only extracts, with the
model's own feature schema, and returns the values in the model's column order. The upload is
read from memory by the schema's extractor (``read_at`` over the bytes): it is never written to
disk and its name is never used as a path (the reply does not even repeat it).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from fedmetamal.detect.scan import NOT_PE_KINDS, NOT_PE_PREFIX, _pe_type
from fedmetamal.errors import DataError, FedMetaMalError
from fedmetamal.features.extract_file import MAX_READ
from fedmetamal.features.outcome import Failure, Outcome, Row
from fedmetamal.features.schema import FeatureSchema, get_schema, schema_names
from fedmetamal.service.server_core import ServerCore
from fedmetamal.v1 import dashboard_pb2 as pb
from fedmetamal.web.auth import upload_limit_message
from fedmetamal.web.control_connect import code_of

NOT_PE = "not a PE file"
_CACHE_SIZE = 16


class ModelSchemaError(FedMetaMalError):
    """A model whose features cannot be extracted from files."""


@dataclass(frozen=True)
class ModelColumns:
    """A model's feature schema and, per model input, its position in the schema's row."""

    schema: FeatureSchema
    columns: tuple[int, ...]


def model_columns(
    metadata: dict[str, object], feature_names: list[str], model_id: str
) -> ModelColumns:
    """Resolve a checkpoint's feature schema against the registry, as scanning does."""
    stamp = metadata.get("feature_schema")
    schema: FeatureSchema | None = None
    if isinstance(stamp, dict) and isinstance(stamp.get("name"), str):
        try:
            schema = get_schema(stamp["name"])
        except DataError:
            raise ModelSchemaError(
                f"Model '{model_id}' was trained on feature schema '{stamp['name'][:64]}', which "
                f"this server cannot extract (it knows {', '.join(schema_names())}).",
                "Pick a model trained on one of those schemas.",
            ) from None
        version = stamp.get("version")
        if version is not None and version != schema.version:
            raise ModelSchemaError(
                f"Model '{model_id}' was trained on schema '{schema.name}' v{version}, but this "
                f"server extracts v{schema.version}.",
                "Retrain the model with this version of fedmetamal.",
            )
    else:
        schema = next(
            (get_schema(n) for n in schema_names() if list(get_schema(n).columns) == feature_names),
            None,
        )
    if schema is None:
        raise ModelSchemaError(
            f"Model '{model_id}' was trained on data without a file feature schema (synthetic "
            "data, for example): it cannot score files.",
            "Pick a model trained on extracted PE files (fedmetamal extract) or pe-headers.",
        )
    index = {c: i for i, c in enumerate(schema.columns)}
    unknown = [n for n in feature_names if n not in index]
    if unknown:
        raise ModelSchemaError(
            f"Model '{model_id}' takes features {', '.join(unknown[:5])} that schema "
            f"'{schema.name}' does not have.",
            "Retrain the model with this version of fedmetamal.",
        )
    return ModelColumns(schema, tuple(index[n] for n in feature_names))


def extract_bytes(data: bytes, schema: FeatureSchema) -> Outcome:
    """Run ``schema``'s extractor on in-memory bytes (never raises, like extract_file)."""
    view = memoryview(data)
    size = len(data)

    def read_at(offset: int, length: int) -> bytes:
        if offset < 0 or offset >= size or length <= 0:
            return b""
        return bytes(view[offset : offset + min(length, MAX_READ, size - offset)])

    try:
        return schema.extract(read_at, size)
    except Exception as err:  # a malformed file must never take the server down
        return Failure(f"extractor error: {type(err).__name__}: {err}")


class DetectService:
    """Implements the generated ``DetectService`` protocol."""

    def __init__(self, core: ServerCore, max_upload_bytes: int) -> None:
        self.core = core
        self.max_upload_bytes = max_upload_bytes
        self._models: OrderedDict[str, ModelColumns] = OrderedDict()

    def _model(self, model_id: str) -> ModelColumns:
        found = self._models.get(model_id)
        if found is not None:
            self._models.move_to_end(model_id)
            return found
        from fedmetamal.models.checkpoint import load_checkpoint

        rec = self.core.store.get_model(model_id)
        ckpt = load_checkpoint(self.core.data_dir / rec.path)
        found = model_columns(dict(ckpt.metadata), list(ckpt.feature_names), model_id)
        self._models[model_id] = found
        while len(self._models) > _CACHE_SIZE:
            self._models.popitem(last=False)
        return found

    async def extract_features(
        self, request: pb.ExtractFeaturesRequest, ctx: RequestContext
    ) -> pb.ExtractFeaturesReply:
        content = request.content
        if len(content) > self.max_upload_bytes:
            raise ConnectError(Code.RESOURCE_EXHAUSTED, upload_limit_message(self.max_upload_bytes))
        if not request.model_id:
            raise ConnectError(Code.INVALID_ARGUMENT, "name the model (model_id) to extract for")
        try:
            model = await asyncio.to_thread(self._model, request.model_id)
        except FedMetaMalError as err:
            raise ConnectError(code_of(err), str(err)) from None
        return await asyncio.to_thread(_extract_reply, content, model)


def _extract_reply(content: bytes, model: ModelColumns) -> pb.ExtractFeaturesReply:
    reply = pb.ExtractFeaturesReply(
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
        feature_schema=model.schema.name,
    )
    outcome = extract_bytes(content, model.schema)
    if isinstance(outcome, Row):
        note = next((w for w in outcome.warnings if w.startswith(NOT_PE_PREFIX)), None)
        if note is None:
            reply.is_pe = True
            reply.file_type = _pe_type(model.schema, outcome)
            reply.features.extend(float(outcome.values[i]) for i in model.columns)
            reply.warnings.extend(outcome.warnings)
            return reply
        reason = note
    else:
        reason = outcome.reason
    kind = reason.split(":", 1)[0].strip()
    not_pe = kind in NOT_PE_KINDS or (kind == "truncated" and not content.startswith(b"MZ"))
    reply.is_pe = False if not_pe else content.startswith(b"MZ")
    reply.file_type = NOT_PE if not_pe else "damaged PE file"
    reply.error = reason
    return reply
