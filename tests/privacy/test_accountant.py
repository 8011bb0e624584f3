"""The Opacus accountant wrapper: reference epsilon, noise for a target, JSON round trip."""

from __future__ import annotations

import json

import pytest
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

from fedmetamal.errors import ConfigError
from fedmetamal.privacy import PrivacyAccountant, noise_for_target, predicted_epsilon


def test_rdp_reference_value() -> None:
    acc = PrivacyAccountant("rdp")
    acc.step(1.5, 0.04, steps=2250)
    eps = acc.epsilon(1e-5)
    assert eps == pytest.approx(7.33, abs=0.05)
    orders = RDPAccountant.DEFAULT_ALPHAS
    rdp = compute_rdp(q=0.04, noise_multiplier=1.5, steps=2250, orders=orders)
    ref, _ = get_privacy_spent(orders=orders, rdp=rdp, delta=1e-5)
    assert eps == pytest.approx(float(ref), rel=1e-9)
    assert acc.steps == 2250
    assert predicted_epsilon(1.5, 0.04, 2250, 1e-5) == pytest.approx(eps, rel=1e-9)


@pytest.mark.parametrize("kind", ["rdp", "prv"])
@pytest.mark.parametrize(("rate", "rounds"), [(1.0, 30), (0.3, 3)])
def test_target_epsilon_is_met(kind: str, rate: float, rounds: int) -> None:
    z = noise_for_target(8.0, 1e-5, rate, rounds, kind)  # type: ignore[arg-type]
    acc = PrivacyAccountant(kind)  # type: ignore[arg-type]
    acc.step(z, rate, steps=rounds)
    assert acc.epsilon(1e-5) == pytest.approx(8.0, rel=0.02)
    assert acc.epsilon(1e-5) <= 8.0 + 1e-9


def test_unreachable_target_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="target_epsilon"):
        noise_for_target(1e-6, 1e-5, 1.0, 10_000)


def test_history_round_trips_through_json() -> None:
    acc = PrivacyAccountant("rdp")
    acc.step(1.1, 0.5, steps=3)
    acc.step(2.0, 0.5)
    text = acc.to_json()
    assert json.loads(text)["history"] == [[1.1, 0.5, 3], [2.0, 0.5, 1]]
    back = PrivacyAccountant.from_json(text)
    assert back.history == acc.history
    assert back.epsilon(1e-5) == acc.epsilon(1e-5)
    assert PrivacyAccountant().epsilon(1e-5) == 0.0
