"""Metric definitions on hand-computed examples, their bounds, and the sampled versions' warnings."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import pytest
import torch

from gfn_envs import metrics


def test_tv_l1_kl_jsd_on_disjoint_supports() -> None:
    p, q = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert metrics.tv(p, q) == 1.0
    assert metrics.l1(p, q) == 2.0
    assert metrics.kl(p, q) == math.inf
    assert metrics.jsd(p, q) == pytest.approx(math.log(2))


def test_metrics_by_hand() -> None:
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75])
    assert metrics.tv(p, q) == pytest.approx(0.25)
    assert metrics.l1(p, q) == pytest.approx(0.5)
    assert metrics.kl(p, q) == pytest.approx(
        0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    )
    assert metrics.kl(q, p) == pytest.approx(
        0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    )
    m = [0.375, 0.625]
    expected_jsd = 0.5 * (0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])) + 0.5 * (
        0.25 * math.log(0.25 / m[0]) + 0.75 * math.log(0.75 / m[1])
    )
    assert metrics.jsd(p, q) == pytest.approx(expected_jsd)
    assert metrics.jsd(q, p) == pytest.approx(expected_jsd)
    assert metrics.kl(torch.tensor([0.0, 1.0]), q) == pytest.approx(-math.log(0.75))
    assert metrics.logz_error(9.5, 9.53585) == pytest.approx(0.03585)
    assert metrics.logz_error(10.0, 9.0) == 1.0


def test_bounds_and_identities_on_random_distributions() -> None:
    generator = torch.Generator().manual_seed(0)
    for size in (2, 7, 100):
        for _ in range(20):
            p = torch.rand(size, generator=generator, dtype=torch.float64) ** 4
            q = torch.rand(size, generator=generator, dtype=torch.float64) ** 4
            p, q = p / p.sum(), q / q.sum()
            tv = metrics.tv(p, q)
            assert 0.0 <= tv <= 1.0
            assert metrics.l1(p, q) == pytest.approx(2 * tv)
            assert 0.0 <= metrics.jsd(p, q) <= math.log(2)
            assert metrics.kl(p, q) >= 0.0
            assert metrics.kl(p, q) >= 2 * tv**2  # Pinsker
            assert metrics.tv(p, p) == metrics.jsd(p, p) == metrics.kl(p, p) == 0.0


def test_exact_metrics_names_and_kl_direction() -> None:
    p, target = torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75])
    out = metrics.exact_metrics(p, target)
    assert set(out) == {"tv", "l1", "kl", "jsd"}
    assert out["kl"] == pytest.approx(metrics.kl(target, p))


def test_expected_modes_found_by_hand() -> None:
    p = torch.tensor([0.5, 0.25, 0.25])
    assert metrics.expected_modes_found(p, torch.tensor([True, False, False]), 2) == pytest.approx(
        0.75
    )
    assert metrics.expected_modes_found(p, torch.tensor([0, 1]), 1) == pytest.approx(0.75)
    assert metrics.expected_modes_found(
        torch.tensor([1.0, 0.0]), torch.tensor([0]), 3
    ) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "fn", [metrics.tv, metrics.l1, metrics.kl, metrics.jsd, metrics.exact_metrics]
)
def test_mismatched_shapes_are_rejected(fn: Callable[..., object]) -> None:
    with pytest.raises(ValueError, match="equal length"):
        fn(torch.tensor([0.5, 0.5]), torch.tensor([0.2, 0.3, 0.5]))
    with pytest.raises(ValueError, match="1-D"):
        fn(torch.ones(2, 2) / 4, torch.ones(2, 2) / 4)


def test_sampled_metrics_report_count_and_warn_at_the_noise_floor() -> None:
    target = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    n = 4000
    generator = torch.Generator().manual_seed(0)
    exact_draws = torch.multinomial(target, n, replacement=True, generator=generator)
    with pytest.warns(UserWarning, match="noise floor"):
        out = metrics.sampled_metrics(exact_draws, target)
    assert out["n_samples"] == n
    assert out["tv_noise_floor"] == pytest.approx(metrics.tv_noise_floor(target, n))
    freq = metrics.empirical_distribution(exact_draws, 4)
    assert out["tv"] == pytest.approx(metrics.tv(freq, target))
    assert out["l1"] == pytest.approx(2 * out["tv"])
    assert out["jsd"] == pytest.approx(metrics.jsd(freq, target))

    biased = torch.multinomial(target.flip(0), n, replacement=True, generator=generator)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = metrics.sampled_metrics(biased, target)
    assert out["tv"] > 0.25


def test_noise_floor_matches_simulation() -> None:
    """The normal approximation of E[TV] of exact sampling agrees with simulation within 10 %."""
    target = torch.softmax(torch.randn(50, generator=torch.Generator().manual_seed(1)), 0).double()
    n = 2000
    generator = torch.Generator().manual_seed(2)
    tvs = [
        metrics.tv(
            metrics.empirical_distribution(
                torch.multinomial(target, n, replacement=True, generator=generator), 50
            ),
            target,
        )
        for _ in range(200)
    ]
    assert sum(tvs) / len(tvs) == pytest.approx(metrics.tv_noise_floor(target, n), rel=0.1)


def test_sampled_metrics_reject_empty_samples() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        metrics.sampled_metrics(torch.tensor([], dtype=torch.long), torch.tensor([0.5, 0.5]))
