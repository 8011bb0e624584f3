from fedmetamal.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollRequest(_message.Message):
    __slots__ = ("token", "name", "public_key", "protocol_version", "platform")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    token: str
    name: str
    public_key: bytes
    protocol_version: int
    platform: str
    def __init__(self, token: _Optional[str] = ..., name: _Optional[str] = ..., public_key: _Optional[bytes] = ..., protocol_version: _Optional[int] = ..., platform: _Optional[str] = ...) -> None: ...

class EnrollReply(_message.Message):
    __slots__ = ("participant_id", "state", "heartbeat_interval_s", "protocol_version")
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    participant_id: str
    state: str
    heartbeat_interval_s: float
    protocol_version: int
    def __init__(self, participant_id: _Optional[str] = ..., state: _Optional[str] = ..., heartbeat_interval_s: _Optional[float] = ..., protocol_version: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("activity", "task_id", "progress")
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    activity: str
    task_id: str
    progress: float
    def __init__(self, activity: _Optional[str] = ..., task_id: _Optional[str] = ..., progress: _Optional[float] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("interval_s", "state", "server_time")
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    interval_s: float
    state: str
    server_time: float
    def __init__(self, interval_s: _Optional[float] = ..., state: _Optional[str] = ..., server_time: _Optional[float] = ...) -> None: ...

class ReportSummaryReply(_message.Message):
    __slots__ = ("accepted", "message")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    message: str
    def __init__(self, accepted: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class PullTaskRequest(_message.Message):
    __slots__ = ("wait_s",)
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    wait_s: float
    def __init__(self, wait_s: _Optional[float] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "run_id", "round", "kind", "config_json", "slot", "n_slots", "deadline_unix", "lr", "secagg")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Task.Kind]
        TRAIN: _ClassVar[Task.Kind]
        EVALUATE: _ClassVar[Task.Kind]
        SECAGG_ADVERTISE: _ClassVar[Task.Kind]
        SECAGG_SHARE_KEYS: _ClassVar[Task.Kind]
        SECAGG_MASKED_TRAIN: _ClassVar[Task.Kind]
        SECAGG_UNMASK: _ClassVar[Task.Kind]
        SUMMARISE: _ClassVar[Task.Kind]
    KIND_UNSPECIFIED: Task.Kind
    TRAIN: Task.Kind
    EVALUATE: Task.Kind
    SECAGG_ADVERTISE: Task.Kind
    SECAGG_SHARE_KEYS: Task.Kind
    SECAGG_MASKED_TRAIN: Task.Kind
    SECAGG_UNMASK: Task.Kind
    SUMMARISE: Task.Kind
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    N_SLOTS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    SECAGG_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    run_id: str
    round: int
    kind: Task.Kind
    config_json: str
    slot: int
    n_slots: int
    deadline_unix: float
    lr: float
    secagg: SecAggMessage
    def __init__(self, task_id: _Optional[str] = ..., run_id: _Optional[str] = ..., round: _Optional[int] = ..., kind: _Optional[_Union[Task.Kind, str]] = ..., config_json: _Optional[str] = ..., slot: _Optional[int] = ..., n_slots: _Optional[int] = ..., deadline_unix: _Optional[float] = ..., lr: _Optional[float] = ..., secagg: _Optional[_Union[SecAggMessage, _Mapping]] = ...) -> None: ...

class PullTaskReply(_message.Message):
    __slots__ = ("has_task", "task", "retry_after_s", "state", "payload")
    HAS_TASK_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    has_task: bool
    task: Task
    retry_after_s: float
    state: str
    payload: _containers.RepeatedCompositeFieldContainer[_common_pb2.PayloadChunk]
    def __init__(self, has_task: _Optional[bool] = ..., task: _Optional[_Union[Task, _Mapping]] = ..., retry_after_s: _Optional[float] = ..., state: _Optional[str] = ..., payload: _Optional[_Iterable[_Union[_common_pb2.PayloadChunk, _Mapping]]] = ...) -> None: ...

class DownloadTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("task_id", "run_id", "round", "num_samples", "steps", "train_loss", "metrics", "payload", "secagg", "error")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SECAGG_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    run_id: str
    round: int
    num_samples: int
    steps: int
    train_loss: float
    metrics: _containers.ScalarMap[str, float]
    payload: _common_pb2.PayloadHeader
    secagg: SecAggMessage
    error: str
    def __init__(self, task_id: _Optional[str] = ..., run_id: _Optional[str] = ..., round: _Optional[int] = ..., num_samples: _Optional[int] = ..., steps: _Optional[int] = ..., train_loss: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., payload: _Optional[_Union[_common_pb2.PayloadHeader, _Mapping]] = ..., secagg: _Optional[_Union[SecAggMessage, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadReply(_message.Message):
    __slots__ = ("accepted", "reason")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class SecAggParams(_message.Message):
    __slots__ = ("threshold", "vector_len", "neighbours", "bits", "range", "weight_bound")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VECTOR_LEN_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_BOUND_FIELD_NUMBER: _ClassVar[int]
    threshold: int
    vector_len: int
    neighbours: int
    bits: int
    range: float
    weight_bound: float
    def __init__(self, threshold: _Optional[int] = ..., vector_len: _Optional[int] = ..., neighbours: _Optional[int] = ..., bits: _Optional[int] = ..., range: _Optional[float] = ..., weight_bound: _Optional[float] = ...) -> None: ...

class SecAggKeys(_message.Message):
    __slots__ = ("client_id", "c_pk", "s_pk")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    C_PK_FIELD_NUMBER: _ClassVar[int]
    S_PK_FIELD_NUMBER: _ClassVar[int]
    client_id: int
    c_pk: bytes
    s_pk: bytes
    def __init__(self, client_id: _Optional[int] = ..., c_pk: _Optional[bytes] = ..., s_pk: _Optional[bytes] = ...) -> None: ...

class SecAggBroadcast(_message.Message):
    __slots__ = ("keys", "members", "neighbours", "graph_seed")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_SEED_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[SecAggKeys]
    members: _containers.RepeatedScalarFieldContainer[int]
    neighbours: int
    graph_seed: bytes
    def __init__(self, keys: _Optional[_Iterable[_Union[SecAggKeys, _Mapping]]] = ..., members: _Optional[_Iterable[int]] = ..., neighbours: _Optional[int] = ..., graph_seed: _Optional[bytes] = ...) -> None: ...

class SecAggShare(_message.Message):
    __slots__ = ("sender", "recipient", "nonce", "ciphertext")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    sender: int
    recipient: int
    nonce: bytes
    ciphertext: bytes
    def __init__(self, sender: _Optional[int] = ..., recipient: _Optional[int] = ..., nonce: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class SecAggShares(_message.Message):
    __slots__ = ("shares",)
    SHARES_FIELD_NUMBER: _ClassVar[int]
    shares: _containers.RepeatedCompositeFieldContainer[SecAggShare]
    def __init__(self, shares: _Optional[_Iterable[_Union[SecAggShare, _Mapping]]] = ...) -> None: ...

class SecAggUnmaskRequest(_message.Message):
    __slots__ = ("survivors", "dropped")
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    survivors: _containers.RepeatedScalarFieldContainer[int]
    dropped: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, survivors: _Optional[_Iterable[int]] = ..., dropped: _Optional[_Iterable[int]] = ...) -> None: ...

class SecAggRevealed(_message.Message):
    __slots__ = ("owner", "x", "ys")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    YS_FIELD_NUMBER: _ClassVar[int]
    owner: int
    x: int
    ys: bytes
    def __init__(self, owner: _Optional[int] = ..., x: _Optional[int] = ..., ys: _Optional[bytes] = ...) -> None: ...

class SecAggUnmaskResponse(_message.Message):
    __slots__ = ("b_shares", "sk_shares")
    B_SHARES_FIELD_NUMBER: _ClassVar[int]
    SK_SHARES_FIELD_NUMBER: _ClassVar[int]
    b_shares: _containers.RepeatedCompositeFieldContainer[SecAggRevealed]
    sk_shares: _containers.RepeatedCompositeFieldContainer[SecAggRevealed]
    def __init__(self, b_shares: _Optional[_Iterable[_Union[SecAggRevealed, _Mapping]]] = ..., sk_shares: _Optional[_Iterable[_Union[SecAggRevealed, _Mapping]]] = ...) -> None: ...

class SecAggMessage(_message.Message):
    __slots__ = ("session", "params", "keys", "broadcast", "shares", "unmask_request", "unmask_response")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    BROADCAST_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    UNMASK_REQUEST_FIELD_NUMBER: _ClassVar[int]
    UNMASK_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    session: str
    params: SecAggParams
    keys: SecAggKeys
    broadcast: SecAggBroadcast
    shares: SecAggShares
    unmask_request: SecAggUnmaskRequest
    unmask_response: SecAggUnmaskResponse
    def __init__(self, session: _Optional[str] = ..., params: _Optional[_Union[SecAggParams, _Mapping]] = ..., keys: _Optional[_Union[SecAggKeys, _Mapping]] = ..., broadcast: _Optional[_Union[SecAggBroadcast, _Mapping]] = ..., shares: _Optional[_Union[SecAggShares, _Mapping]] = ..., unmask_request: _Optional[_Union[SecAggUnmaskRequest, _Mapping]] = ..., unmask_response: _Optional[_Union[SecAggUnmaskResponse, _Mapping]] = ...) -> None: ...
