"""What a run of the network runtime needs before its first round, the same way on the server and
on every participant: the checked configuration, the network, the algorithm and the shapes of
what clients upload.

The simulation runtime builds these from one process's view of the federation; here the server
knows its participants only by their dataset summaries, and each participant rebuilds the
algorithm from the run's configuration to run its client-side hooks.
"""

from __future__ import annotations

import torch

from fedmetamal.config import RunConfig
from fedmetamal.errors import ConfigError
from fedmetamal.fl.base import Algorithm, RoundContext
from fedmetamal.fl.registry import algorithm_class, build_algorithm
from fedmetamal.models.networks import Network


def parse_run_config(config_json: str) -> RunConfig:
    """The run's configuration from its JSON form (the wire and the database hold JSON)."""
    from pydantic import ValidationError

    from fedmetamal.config import format_validation_error

    try:
        return RunConfig.model_validate_json(config_json or "{}")
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "run configuration")) from None


def check_network_run(cfg: RunConfig, n_participants: int | None = None) -> None:
    """Refuse, before a run is created (and again when it starts, with its participants
    known), the options only the simulation runtime has and settings that cannot run."""
    refusals = []
    if algorithm_class(cfg.algorithm.name).pooled:
        refusals.append(
            f"algorithm '{cfg.algorithm.name}' pools every client's data in one place, which "
            "a federation of separate machines cannot do"
        )
    if cfg.semi.scenario != "none":
        refusals.append(f"semi.scenario '{cfg.semi.scenario}' (semi-supervised training)")
    if cfg.privacy.mode == "sample":
        refusals.append("privacy.mode 'sample' (DP-SGD at every participant)")
    if cfg.privacy.mode == "participant" and cfg.privacy.noise_placement == "distributed":
        refusals.append("privacy.noise_placement 'distributed'")
    if cfg.privacy.mode == "participant" and cfg.secagg.enabled:
        refusals.append("privacy.mode 'participant' together with secagg.enabled")
    if cfg.secagg.enabled and cfg.secagg.dropout > 0:
        refusals.append(
            "secagg.dropout (simulated dropouts: participants of a real federation drop out "
            "by themselves)"
        )
    if cfg.attack.kind != "none":
        refusals.append(f"attack.kind '{cfg.attack.kind}' (simulated attacks)")
    if cfg.aggregation.kind == "fltrust":
        refusals.append("aggregation.kind 'fltrust' (needs a root dataset on the server)")
    if not refusals and cfg.secagg.enabled:
        from fedmetamal.sim.secure_round import check_secagg_config

        if n_participants:
            per_round = max(1, round(cfg.training.client_fraction * n_participants))
        else:  # participants chosen at start: check the rule and algorithm only
            per_round = max(2, cfg.secagg.threshold or 2)
        check_secagg_config(cfg, min(per_round, n_participants or per_round))
    if refusals:
        raise ConfigError(
            "The network runtime does not support " + "; ".join(refusals) + " yet.",
            "Run these settings with `fedmetamal simulate`, or remove them from the run's "
            "configuration.",
        )


def build_run_algorithm(cfg: RunConfig, n_slots: int) -> Algorithm:
    """The run's algorithm, its aggregation rule checked against the participants per round."""
    from fedmetamal.fl.aggregate import check_aggregation

    per_round = min(n_slots, max(1, round(cfg.training.client_fraction * n_slots)))
    check_aggregation(cfg.aggregation, per_round, byzantine=None)
    return build_algorithm(
        cfg.algorithm.name, cfg.algorithm.params, cfg.algorithm.server_lr, cfg.aggregation
    )


def build_network(cfg: RunConfig, n_features: int) -> Network:
    return Network.from_config(cfg.model, n_features)


def initial_params(cfg: RunConfig, network: Network) -> torch.Tensor:
    """The round-0 global model: the same draw as the simulation's for the same seed."""
    gen = torch.Generator().manual_seed(cfg.seed)
    return network.init(gen)


def upload_shapes(algorithm: Algorithm, network: Network) -> dict[str, tuple[int, ...]]:
    """Name -> shape of each float32 tensor a client uploads: ``delta`` and the algorithm's
    extras (found by running its client hook once on zeros, so no algorithm lists them twice).
    """
    p = network.num_params
    params = torch.zeros(p)
    state = {k: v.unsqueeze(0) for k, v in algorithm.init_client_state(p).items()}
    ctx = RoundContext(
        round=0, global_params=params, broadcast=_zero_broadcast(algorithm, p), lr=1.0
    )
    extras, _ = algorithm.client_finish(params.unsqueeze(0), torch.ones(1), ctx, state)
    shapes = {"delta": (p,)}
    shapes |= {f"extra.{k}": tuple(v.shape[1:]) for k, v in extras.items()}
    return shapes


def _zero_broadcast(algorithm: Algorithm, p: int) -> dict[str, torch.Tensor]:
    state = algorithm.init_server_state(torch.zeros(p))
    return algorithm.broadcast(state)
