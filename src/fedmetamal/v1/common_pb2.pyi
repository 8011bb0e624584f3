from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TensorSpec(_message.Message):
    __slots__ = ("name", "dtype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class InlineTensor(_message.Message):
    __slots__ = ("spec", "data")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    spec: TensorSpec
    data: bytes
    def __init__(self, spec: _Optional[_Union[TensorSpec, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class PayloadHeader(_message.Message):
    __slots__ = ("tensors", "total_bytes", "sha256")
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    total_bytes: int
    sha256: bytes
    def __init__(self, tensors: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class PayloadChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: PayloadHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[PayloadHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class DatasetSummary(_message.Message):
    __slots__ = ("dataset_name", "n_train", "n_unlabelled", "n_test", "label_counts", "family_counts", "n_features", "feature_schema", "schema_digest", "feature_sums", "first_seen_min", "first_seen_max", "feature_names")
    class LabelCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class FamilyCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DATASET_NAME_FIELD_NUMBER: _ClassVar[int]
    N_TRAIN_FIELD_NUMBER: _ClassVar[int]
    N_UNLABELLED_FIELD_NUMBER: _ClassVar[int]
    N_TEST_FIELD_NUMBER: _ClassVar[int]
    LABEL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    FAMILY_COUNTS_FIELD_NUMBER: _ClassVar[int]
    N_FEATURES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_DIGEST_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SUMS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_MIN_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_MAX_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    dataset_name: str
    n_train: int
    n_unlabelled: int
    n_test: int
    label_counts: _containers.ScalarMap[str, int]
    family_counts: _containers.ScalarMap[str, int]
    n_features: int
    feature_schema: str
    schema_digest: str
    feature_sums: _containers.RepeatedCompositeFieldContainer[InlineTensor]
    first_seen_min: float
    first_seen_max: float
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset_name: _Optional[str] = ..., n_train: _Optional[int] = ..., n_unlabelled: _Optional[int] = ..., n_test: _Optional[int] = ..., label_counts: _Optional[_Mapping[str, int]] = ..., family_counts: _Optional[_Mapping[str, int]] = ..., n_features: _Optional[int] = ..., feature_schema: _Optional[str] = ..., schema_digest: _Optional[str] = ..., feature_sums: _Optional[_Iterable[_Union[InlineTensor, _Mapping]]] = ..., first_seen_min: _Optional[float] = ..., first_seen_max: _Optional[float] = ..., feature_names: _Optional[_Iterable[str]] = ...) -> None: ...
