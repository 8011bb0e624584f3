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


class AugmentConfig(_Strict):
    """Augmentations of (preprocessed, standardised) feature vectors for consistency training.

    ``corrupt``: share of features replaced by another sample's value of the same feature (SCARF,
    Bahri et al. 2022); ``mask``: share set to 0 (the feature mean after standardisation);
    ``noise``: Gaussian noise std in feature standard deviations.
    """

    weak_corrupt: float = Field(0.05, ge=0.0, le=1.0)
    weak_mask: float = Field(0.0, ge=0.0, le=1.0)
    weak_noise: float = Field(0.05, ge=0.0)
    strong_corrupt: float = Field(0.3, ge=0.0, le=1.0)
    strong_mask: float = Field(0.1, ge=0.0, le=1.0)
    strong_noise: float = Field(0.2, ge=0.0)


SemiMethod = Literal["supervised", "pseudo-label", "fixmatch", "fedmatch", "semifl"]


class SemiConfig(_Strict):
    """Semi-supervised federated learning: which labels exist, and how unlabelled data is used."""

    scenario: Literal["none", "labels-at-clients", "labels-at-server"] = Field(
        "none",
        description="none: the dataset's labels as they are; labels-at-clients: each client "
        "keeps label_ratio of its labels; labels-at-server: the server holds server_labels of "
        "the training data labelled, clients hold only unlabelled data",
    )
    label_ratio: float | list[float] = Field(
        1.0,
        description="labels-at-clients: share of each client's samples kept labelled, in "
        "(0, 1]; a list gives one ratio per client",
    )
    stratified: bool = Field(True, description="keep each client's malware share among labels")
    server_labels: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="labels-at-server: share of the training samples the server holds labelled",
    )
    method: SemiMethod = Field("supervised", description="how unlabelled samples are used")
    threshold: float = Field(
        0.95, gt=0.5, lt=1.0, description="confidence a pseudo-label needs (max(p, 1-p))"
    )
    unlabelled_weight: float = Field(1.0, ge=0.0, description="weight of the unlabelled loss")
    warmup_rounds: int = Field(
        5, ge=0, description="rounds of supervised training before pseudo-labels are used"
    )
    unlabelled_ratio: int = Field(
        2, ge=1, description="unlabelled samples per labelled sample in each local batch (mu)"
    )
    class_balanced: bool = Field(
        True, description="select pseudo-labels so their class shares follow the labelled data"
    )
    helpers: int = Field(2, ge=1, description="fedmatch: helper models each client agrees with")
    server_epochs: float = Field(
        1.0, gt=0.0, description="labels-at-server: server fine-tuning epochs per round"
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @field_validator("label_ratio")
    @classmethod
    def _ratio_in_range(cls, v: float | list[float]) -> float | list[float]:
        values = v if isinstance(v, list) else [v]
        if not values:
            raise ValueError("give one ratio, or one per client")
        bad = [r for r in values if not 0.0 < r <= 1.0]
        if bad:
            raise ValueError(f"label ratios must be in (0, 1]; got {bad}")
        return v

    @model_validator(mode="after")
    def _scenario_settings(self) -> SemiConfig:
        if self.scenario == "labels-at-server" and self.server_labels <= 0.0:
            raise ValueError(
                "labels-at-server needs a labelled server set: set semi.server_labels "
                "(e.g. 0.05 = 5% of the training samples)"
            )
        if self.scenario != "labels-at-clients" and self.label_ratio != 1.0:
            raise ValueError(
                "semi.label_ratio is only used with scenario labels-at-clients "
                f"(scenario is {self.scenario})"
            )
        if self.scenario != "labels-at-server" and self.server_labels > 0.0:
            raise ValueError("semi.server_labels is only used with scenario labels-at-server")
        if self.scenario == "labels-at-server" and self.method == "fedmatch":
            raise ValueError(
                "fedmatch needs labels at the clients; use semifl, fixmatch or pseudo-label "
                "with labels-at-server"
            )
        return self


class AggregationConfig(_Strict):
    """How the server combines client updates: the weighted mean, or a robust rule that bounds
    what a minority of malicious participants can do."""

    kind: Literal[
        "mean", "median", "trimmed-mean", "krum", "multi-krum", "bulyan", "norm-bound", "fltrust"
    ] = Field("mean", description="aggregation rule")
    byzantine: int | None = Field(
        None,
        ge=0,
        description="f: malicious participants the rule must tolerate (default: "
        "the attack's count, else 10% of the sampled clients)",
    )
    trim: float = Field(
        0.1, ge=0.0, lt=0.5, description="trimmed-mean: share cut from each end per coordinate"
    )
    multi_krum: int | None = Field(
        None, ge=1, description="multi-krum: updates averaged (default n - f)"
    )
    norm_bound: float = Field(
        1.0, gt=0.0, description="norm-bound: updates longer than this are scaled down to it"
    )
    root_fraction: float = Field(
        0.01,
        gt=0.0,
        lt=1.0,
        description="fltrust: share of the training data the server holds as its root set",
    )
    max_update_norm: float | None = Field(
        None,
        gt=0.0,
        description="exclude (not clip) any client update whose L2 norm exceeds this before "
        "aggregation; non-finite updates are always excluded",
    )


class AttackConfig(_Strict):
    """Malicious participants, for evaluating robust aggregation (simulation only)."""

    kind: Literal[
        "none",
        "label-flip",
        "targeted-flip",
        "sign-flip",
        "scale",
        "gaussian",
        "alie",
        "backdoor",
        "malformed",
    ] = Field("none", description="what the malicious participants do")
    fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of malicious participants")
    scale: float = Field(10.0, gt=0.0, description="scale: factor applied to malicious updates")
    noise_std: float = Field(1.0, gt=0.0, description="gaussian: std of the random updates")
    target_family: str | None = Field(
        None, description="targeted-flip: malware family relabelled benign (default: largest)"
    )
    trigger_features: int = Field(
        3, ge=1, description="backdoor: features set to the trigger value"
    )
    trigger_value: float = Field(
        5.0, description="backdoor: trigger value (standardised feature units)"
    )


class PrivacyConfig(_Strict):
    """Differential privacy. ``participant``: DP-FedAvg (McMahan et al. ICLR 2018), each
    client's update is clipped and Gaussian noise is added to their uniform mean, so the
    released model hides whether any one participant took part. ``sample``: DP-SGD (Abadi et
    al. CCS 2016) inside every participant, so the model hides any one training sample."""

    mode: Literal["none", "participant", "sample"] = Field(
        "none", description="none, participant-level DP-FedAvg, or sample-level DP-SGD"
    )
    clip: float = Field(
        1.0, gt=0.0, description="L2 bound of each client update (sample: of each sample's grad)"
    )
    noise_multiplier: float | None = Field(
        None, ge=0.0, description="z: noise std is z * clip on the sum of clipped vectors"
    )
    target_epsilon: float | None = Field(
        None,
        gt=0.0,
        description="pick z so that epsilon after training.rounds rounds equals this",
    )
    delta: float = Field(1e-5, gt=0.0, lt=1.0, description="delta of (epsilon, delta)-DP")
    accountant: Literal["rdp", "prv"] = Field("rdp", description="Opacus privacy accountant")
    epsilon_budget: float | None = Field(
        None, gt=0.0, description="refuse to train, or stop, before epsilon exceeds this"
    )
    adaptive_clip: bool = Field(
        False, description="track a quantile of the update norms with the clip (Andrew+ 2021)"
    )
    target_quantile: float = Field(
        0.5, gt=0.0, lt=1.0, description="gamma: fraction of updates left unclipped"
    )
    clip_lr: float = Field(0.2, gt=0.0, description="eta_C: geometric update rate of the clip")
    clip_count_stddev: float | None = Field(
        None, gt=0.0, description="sigma_b: noise on the unclipped count (default m/20)"
    )
    noise_placement: Literal["central", "distributed"] = Field(
        "central",
        description="participant: the server adds the noise (central), or each of the m "
        "reporting clients adds 1/m of its variance before masking (distributed)",
    )

    @model_validator(mode="after")
    def _one_noise_setting(self) -> PrivacyConfig:
        both_or_neither = (self.noise_multiplier is None) == (self.target_epsilon is None)
        if self.mode != "none" and both_or_neither:
            raise ValueError(
                f"privacy mode {self.mode} needs exactly one of privacy.noise_multiplier "
                "and privacy.target_epsilon"
            )
        if self.mode == "sample" and self.adaptive_clip:
            raise ValueError(
                "privacy.adaptive_clip applies to participant-level updates; set it to false "
                "with privacy mode sample (the per-sample clip is privacy.clip)"
            )
        return self

    @model_validator(mode="after")
    def _placement_needs_participant(self) -> PrivacyConfig:
        if self.noise_placement == "distributed" and self.mode != "participant":
            raise ValueError(
                "privacy.noise_placement distributed splits the participant-level noise over "
                "the clients; use it with privacy mode participant"
            )
        return self


class SecAggConfig(_Strict):
    """Secure aggregation (Bonawitz et al. CCS 2017; SecAgg+ of Bell et al. CCS 2020 with
    ``neighbours``): the server learns only the sum of the surviving clients' masked updates.
    Simulated in-process, with the real protocol messages, cryptography and dropouts."""

    enabled: bool = Field(False, description="aggregate client updates with secure aggregation")
    threshold: int | None = Field(
        None,
        ge=1,
        description="t: survivors needed to unmask (default a majority of the round's cohort, "
        "or of each neighbourhood with neighbours)",
    )
    neighbours: int | None = Field(
        None,
        ge=2,
        description="SecAgg+: each client masks with and shares to this many neighbours "
        "(default: everyone, the complete graph)",
    )
    bits: int = Field(16, ge=1, le=31, description="quantisation bits per coordinate")
    range: float | None = Field(
        None,
        gt=0.0,
        description="coordinates are clipped to [-range, range] before encoding (default "
        "0.5, or privacy.clip with participant DP plus room for distributed noise)",
    )
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of each round's cohort that goes silent"
    )
    dropout_stage: Literal["advertise", "share_keys", "masked_input", "unmasking", "random"] = (
        Field("masked_input", description="protocol stage the dropouts go silent at")
    )


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


class NetworkConfig(_Strict):
    """How the network runtime (``fedmetamal serve``) runs rounds; the simulation ignores it."""

    min_participants: int = Field(
        1, ge=1, description="fewest updates a round aggregates; fewer: the round is retried"
    )
    round_timeout_s: float = Field(
        600.0, gt=0, description="deadline of a round; late or missing updates are dropped"
    )
    max_attempts: int = Field(
        5, ge=1, description="tries of one round before the run fails for lack of participants"
    )
    retry_delay_s: float = Field(5.0, ge=0, description="pause before a round is retried")
    start_timeout_s: float = Field(
        600.0, gt=0, description="how long a starting run waits for its participants' summaries"
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
    semi: SemiConfig = Field(default_factory=SemiConfig)
    aggregation: AggregationConfig = Field(default_factory=AggregationConfig)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    secagg: SecAggConfig = Field(default_factory=SecAggConfig)
    evaluation: EvalConfig = Field(default_factory=EvalConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
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


def read_yaml_mapping(path: Path, what: str = "Config file") -> dict[str, Any]:
    """The top-level mapping of a YAML settings file (empty file: ``{}``); errors say ``what``
    the file is (run config, suite file, base config) and where it is."""
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist.", "Check the path.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} '{path}' is not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{path}' must hold a mapping of settings at the top level.")
    return data


def load_config(path: Path | str) -> RunConfig:
    """Read a YAML run configuration; errors name the file and the field."""
    p = Path(path)
    return build_config(read_yaml_mapping(p), origin=f"config file '{p}'")


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
