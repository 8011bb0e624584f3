from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LoginRequest(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class LoginReply(_message.Message):
    __slots__ = ("username", "role", "expires_unix")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_FIELD_NUMBER: _ClassVar[int]
    username: str
    role: str
    expires_unix: float
    def __init__(self, username: _Optional[str] = ..., role: _Optional[str] = ..., expires_unix: _Optional[float] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogoutReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIReply(_message.Message):
    __slots__ = ("logged_in", "username", "role", "expires_unix")
    LOGGED_IN_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_FIELD_NUMBER: _ClassVar[int]
    logged_in: bool
    username: str
    role: str
    expires_unix: float
    def __init__(self, logged_in: _Optional[bool] = ..., username: _Optional[str] = ..., role: _Optional[str] = ..., expires_unix: _Optional[float] = ...) -> None: ...

class CreateUserRequest(_message.Message):
    __slots__ = ("username", "password", "role")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    role: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("username", "role", "created_unix", "last_login_unix", "active_sessions")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_LOGIN_UNIX_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    username: str
    role: str
    created_unix: float
    last_login_unix: float
    active_sessions: int
    def __init__(self, username: _Optional[str] = ..., role: _Optional[str] = ..., created_unix: _Optional[float] = ..., last_login_unix: _Optional[float] = ..., active_sessions: _Optional[int] = ...) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListUsersReply(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...

class UpdateUserRequest(_message.Message):
    __slots__ = ("username", "role", "new_password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    role: str
    new_password: str
    def __init__(self, username: _Optional[str] = ..., role: _Optional[str] = ..., new_password: _Optional[str] = ...) -> None: ...

class DeleteUserRequest(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class DeleteUserReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ChangePasswordRequest(_message.Message):
    __slots__ = ("current_password", "new_password")
    CURRENT_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    current_password: str
    new_password: str
    def __init__(self, current_password: _Optional[str] = ..., new_password: _Optional[str] = ...) -> None: ...

class ChangePasswordReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetConfigSchemaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AlgorithmInfo(_message.Message):
    __slots__ = ("name", "summary", "reference", "params_schema_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    summary: str
    reference: str
    params_schema_json: str
    def __init__(self, name: _Optional[str] = ..., summary: _Optional[str] = ..., reference: _Optional[str] = ..., params_schema_json: _Optional[str] = ...) -> None: ...

class ConfigSchema(_message.Message):
    __slots__ = ("json_schema", "defaults_json", "algorithms", "datasets")
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_JSON_FIELD_NUMBER: _ClassVar[int]
    ALGORITHMS_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    json_schema: str
    defaults_json: str
    algorithms: _containers.RepeatedCompositeFieldContainer[AlgorithmInfo]
    datasets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, json_schema: _Optional[str] = ..., defaults_json: _Optional[str] = ..., algorithms: _Optional[_Iterable[_Union[AlgorithmInfo, _Mapping]]] = ..., datasets: _Optional[_Iterable[str]] = ...) -> None: ...

class ValidateConfigRequest(_message.Message):
    __slots__ = ("config_json", "simulated")
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    config_json: str
    simulated: bool
    def __init__(self, config_json: _Optional[str] = ..., simulated: _Optional[bool] = ...) -> None: ...

class FieldError(_message.Message):
    __slots__ = ("path", "message")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    path: str
    message: str
    def __init__(self, path: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ValidateConfigReply(_message.Message):
    __slots__ = ("valid", "errors", "normalized_json")
    VALID_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_JSON_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    errors: _containers.RepeatedCompositeFieldContainer[FieldError]
    normalized_json: str
    def __init__(self, valid: _Optional[bool] = ..., errors: _Optional[_Iterable[_Union[FieldError, _Mapping]]] = ..., normalized_json: _Optional[str] = ...) -> None: ...

class Template(_message.Message):
    __slots__ = ("name", "config_json", "created_unix", "created_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    config_json: str
    created_unix: float
    created_by: str
    def __init__(self, name: _Optional[str] = ..., config_json: _Optional[str] = ..., created_unix: _Optional[float] = ..., created_by: _Optional[str] = ...) -> None: ...

class SaveTemplateRequest(_message.Message):
    __slots__ = ("name", "config_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    config_json: str
    def __init__(self, name: _Optional[str] = ..., config_json: _Optional[str] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTemplatesReply(_message.Message):
    __slots__ = ("templates",)
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[Template]
    def __init__(self, templates: _Optional[_Iterable[_Union[Template, _Mapping]]] = ...) -> None: ...

class ModelReportRequest(_message.Message):
    __slots__ = ("model_id", "target_fpr")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FPR_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    target_fpr: float
    def __init__(self, model_id: _Optional[str] = ..., target_fpr: _Optional[float] = ...) -> None: ...

class RocPoint(_message.Message):
    __slots__ = ("fpr", "tpr", "threshold")
    FPR_FIELD_NUMBER: _ClassVar[int]
    TPR_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    fpr: float
    tpr: float
    threshold: float
    def __init__(self, fpr: _Optional[float] = ..., tpr: _Optional[float] = ..., threshold: _Optional[float] = ...) -> None: ...

class ConfusionMatrix(_message.Message):
    __slots__ = ("true_positives", "false_positives", "true_negatives", "false_negatives")
    TRUE_POSITIVES_FIELD_NUMBER: _ClassVar[int]
    FALSE_POSITIVES_FIELD_NUMBER: _ClassVar[int]
    TRUE_NEGATIVES_FIELD_NUMBER: _ClassVar[int]
    FALSE_NEGATIVES_FIELD_NUMBER: _ClassVar[int]
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    def __init__(self, true_positives: _Optional[int] = ..., false_positives: _Optional[int] = ..., true_negatives: _Optional[int] = ..., false_negatives: _Optional[int] = ...) -> None: ...

class ModelReport(_message.Message):
    __slots__ = ("model_id", "run_id", "round", "architecture_json", "num_params", "feature_schema", "n_features", "metrics", "roc", "threshold", "confusion", "evaluated_on")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_JSON_FIELD_NUMBER: _ClassVar[int]
    NUM_PARAMS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    N_FEATURES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ROC_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CONFUSION_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_ON_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    run_id: str
    round: int
    architecture_json: str
    num_params: int
    feature_schema: str
    n_features: int
    metrics: _containers.ScalarMap[str, float]
    roc: _containers.RepeatedCompositeFieldContainer[RocPoint]
    threshold: float
    confusion: ConfusionMatrix
    evaluated_on: str
    def __init__(self, model_id: _Optional[str] = ..., run_id: _Optional[str] = ..., round: _Optional[int] = ..., architecture_json: _Optional[str] = ..., num_params: _Optional[int] = ..., feature_schema: _Optional[str] = ..., n_features: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., roc: _Optional[_Iterable[_Union[RocPoint, _Mapping]]] = ..., threshold: _Optional[float] = ..., confusion: _Optional[_Union[ConfusionMatrix, _Mapping]] = ..., evaluated_on: _Optional[str] = ...) -> None: ...

class ExtractFeaturesRequest(_message.Message):
    __slots__ = ("filename", "content", "model_id")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    filename: str
    content: bytes
    model_id: str
    def __init__(self, filename: _Optional[str] = ..., content: _Optional[bytes] = ..., model_id: _Optional[str] = ...) -> None: ...

class ExtractFeaturesReply(_message.Message):
    __slots__ = ("sha256", "size", "file_type", "is_pe", "feature_schema", "features", "warnings", "error")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FILE_TYPE_FIELD_NUMBER: _ClassVar[int]
    IS_PE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    file_type: str
    is_pe: bool
    feature_schema: str
    features: _containers.RepeatedScalarFieldContainer[float]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    error: str
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ..., file_type: _Optional[str] = ..., is_pe: _Optional[bool] = ..., feature_schema: _Optional[str] = ..., features: _Optional[_Iterable[float]] = ..., warnings: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ...) -> None: ...
