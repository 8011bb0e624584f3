"""One configuration schema for YAML files, CLI flags and (later) the dashboard and protobuf.

Every model forbids unknown keys so that a typo is an error, not a silently ignored setting.
Validation errors are turned into one :class:`ConfigError` naming field, value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fedmetamal.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticConfig(_Strict):
    """The built-in generator (:mod:`fedmetamal.data.synthetic`): EMBER-like PE features.

    Malware families of Zipf-like sizes and benign categories, each with a feature signature;
    label noise; temporal drift along ``first_seen`` with families that appear only late.
    """

    n_samples: int = Field(12000, ge=200, description="number of samples")
    n_features: int = Field(
        2568, ge=16, description="feature width (2568 = EMBER v3; groups scale to fit)"
    )
    n_families: int = Field(
        12, ge=1, description="malware families (Zipf-like sizes, >= 10 samples each)"
    )
    n_benign_categories: int = Field(
        6, ge=1, description="benign software categories (>= 10 samples each)"
    )
    malware_fraction: float = Field(0.6, gt=0.0, lt=1.0, description="share of malware")
    label_noise: float = Field(0.02, ge=0.0, lt=0.5, description="share of flipped labels")
    drift: float = Field(
        1.0,
        ge=0.0,
        description="temporal drift along first_seen: signatures move, late families appear "
        "(0 = none)",
    )
    signal: float = Field(
        1.0, gt=0.0, description="scale of the class signatures (larger = easier to detect)"
    )


class DatasetConfig(_Strict):
    source: str = Field(
        "synthetic",
        description="'synthetic', 'pe-headers', or a path to a CSV, Parquet, NPZ or EMBER folder",
    )
    format: Literal["auto", "csv", "parquet", "npz", "ember", "fedmetamal"] = "auto"
    label_column: str | None = Field(None, description="label column (auto-detected if unset)")
    metadata_columns: list[str] = Field(
        default_factory=list, description="extra columns to keep as per-sample metadata"
    )
    nan_policy: Literal["error", "drop-rows", "zero", "median"] = Field(
        "median", description="what to do with NaN/inf feature values"
    )
    max_samples: int | None = Field(None, ge=10, description="random subsample (seeded)")
    ember_subset: Literal["train", "test", "all"] = Field(
        "train", description="which EMBER split to read"
    )
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)


PartitionKind = Literal[
    "iid",
    "dirichlet",
    "label-quantity",
    "family-dirichlet",
    "quantity",
    "feature-noise",
    "feature-subset",
    "temporal",
    "natural",
]


class PartitionConfig(_Strict):
    kind: PartitionKind = Field("iid", description="how samples are spread over clients")
    clients: int = Field(10, ge=1, le=100000, description="number of clients")
    alpha: float = Field(0.5, gt=0.0, description="Dirichlet concentration (smaller = more skew)")
    dirichlet_over: Literal["classes", "clients"] = Field(
        "classes",
        description="dirichlet, family-dirichlet: 'classes' splits each class over the clients "
        "by its own Dir(alpha) draw (NIID-Bench; client sizes vary), 'clients' gives every "
        "client an equal share with a class mix drawn from Dir(alpha * pooled class shares) "
        "(Hsu et al. 2019)",
    )
    k: int = Field(1, ge=1, description="label-quantity: classes (labels or families) per client")
    by: Literal["label", "family"] = Field("label", description="label-quantity: what k counts")
    quantity: Literal["dirichlet", "lognormal"] = Field(
        "dirichlet", description="quantity skew: size distribution"
    )
    sigma: float = Field(1.0, gt=0.0, description="log-normal quantity skew: sigma")
    noise: float = Field(0.5, ge=0.0, description="feature-noise: max noise std (feature units)")
    subset_fraction: float = Field(
        0.7, gt=0.0, le=1.0, description="feature-subset: share of features each client sees"
    )
    feature_skew: Literal["none", "noise", "subset"] = Field(
        "none",
        description="feature skew added on top of any kind (noise: as feature-noise, "
        "subset: as feature-subset), to mix label or quantity skew with feature skew",
    )
    column: str = Field("source", description="natural: metadata column naming the client")
    min_client_size: int = Field(10, ge=1, description="smallest allowed client (train samples)")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="global held-out test share")
    client_test_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="per-client local test share"
    )


class ModelConfig(_Strict):
    kind: Literal["mlp", "logreg"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [256, 64], description="MLP hidden widths")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    norm: Literal["none", "layer"] = Field("none", description="normalisation after each layer")
    activation: Literal["relu", "gelu", "tanh"] = "relu"

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, v: list[int]) -> list[int]:
        if any(w < 1 for w in v):
            raise ValueError("every hidden width must be >= 1")
        return v


class PreprocessConfig(_Strict):
    log_transform: Literal["auto", "all", "none"] = Field(
        "auto", description="signed log1p of heavy-tailed features"
    )
    log_threshold: float = Field(
        100.0, gt=0.0, description="auto: log a feature whose max |x| exceeds this"
    )
    standardize: bool = True


class AlgorithmConfig(_Strict):
    name: str = Field("fedavg", description="federated algorithm (see `fedmetamal algorithms`)")
    server_lr: float | None = Field(
        None, gt=0.0, description="server learning rate (default: the algorithm's own)"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="algorithm-specific hyperparameters"
    )

    @model_validator(mode="after")
    def _known_algorithm(self) -> AlgorithmConfig:
        from fedmetamal.fl.registry import validate_params

        self.__dict__["params"] = validate_params(self.name, self.params)
        return self


class TrainingConfig(_Strict):
    rounds: int = Field(30, ge=1, description="federated rounds")
    local_epochs: float = Field(2.0, gt=0.0, description="local epochs per round")
    local_steps: int | None = Field(None, ge=1, description="fixed local steps (overrides epochs)")
    batch_size: int = Field(64, ge=1)
    client_lr: float = Field(0.1, gt=0.0, description="client SGD learning rate")
    client_momentum: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    lr_schedule: Literal["constant", "cosine", "step", "exponential"] = "constant"
    lr_decay: float = Field(0.5, gt=0.0, le=1.0, description="step/exponential decay factor")
    lr_step_rounds: int = Field(10, ge=1, description="step schedule: rounds between decays")
    client_fraction: float = Field(1.0, gt=0.0, le=1.0, description="clients sampled per round")
    weighting: Literal["samples", "uniform"] = "samples"


class EvalConfig(_Strict):
    every: int = Field(1, ge=1, description="evaluate every N rounds (and the last)")
    per_client: bool = Field(True, description="also evaluate on each client's local test split")


class RuntimeConfig(_Strict):
    strategy: Literal["auto", "batched", "loop"] = Field(
        "auto", description="batch clients as tensors, or loop over them"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch intra-op threads")
    max_batched_clients: int | None = Field(
        None, ge=1, description="cap on clients trained together (memory bound)"
    )


class OutputConfig(_Strict):
    dir: Path = Field(Path("runs"), description="parent folder of run directories")
    name: str | None = Field(None, description="run directory name (default: generated)")
    onnx: bool = True
    checkpoint: bool = True


class RunConfig(_Strict):
    seed: int = Field(0, ge=0, description="seed of every random choice")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    partition: PartitionConfig = Field(default_factory=PartitionConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvalConfig = Field(default_factory=EvalConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)


def format_validation_error(err: ValidationError, origin: str = "configuration") -> str:
    """One readable message: each bad field with its value and what is allowed."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown field '{loc}' (remove it or check its spelling)")
            continue
        value = e.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        lines.append(f"{loc} = {shown}: {e['msg']}")
    return f"Invalid {origin}: " + "; ".join(lines)


def build_config(data: dict[str, Any] | None = None, origin: str = "configuration") -> RunConfig:
    try:
        return RunConfig.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin)) from None


def load_config(path: Path | str) -> RunConfig:
    """Read a YAML run configuration; errors name the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file '{p}' does not exist.", "Check the path.")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"Config file '{p}' is not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file '{p}' must hold a mapping of settings at the top level.")
    return build_config(data, origin=f"config file '{p}'")


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted = 'a.b'`` (used for CLI overrides)."""
    keys = dotted.split(".")
    cur = data
    for k in keys[:-1]:
        nxt = cur.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"Cannot set '{dotted}': '{k}' is not a section.")
        cur = nxt
    cur[keys[-1]] = value


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
