"""Every delivery policy we ship outlasts the outages it must: a MongoDB or RabbitMQ outage of 30 s, and a
``ctx.once`` claim left by a function killed mid-delivery (its lease is the function's timeout)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kfaas.spec import AppSpec, Delivery, load_app

ROOT = Path(__file__).resolve().parents[2]
OUTAGE = 30.0  # seconds of MongoDB or RabbitMQ away that must cost no dead letter
RECOVERY = 10.0  # after it: RabbitMQ's robust reconnect (5 s), pymongo's server selection, a slow attempt


def shipped() -> AppSpec:
    return load_app(ROOT / "functions")


def policies() -> list[tuple[str, Delivery, int]]:
    app = shipped()
    found = [(f"{fn.name}-{t.name}", t.delivery, fn.timeout) for fn in app.functions for t in fn.triggers]
    found += [
        (f"{fn.name}-{s.name} (source)", s.delivery, fn.timeout)
        for fn in app.functions
        for s in fn.sources
        if hasattr(s, "delivery")
    ]
    return found


def test_the_default_policy_outlasts_an_outage_and_a_dead_holders_claim() -> None:
    default = Delivery()
    assert default.retry_window() >= OUTAGE + RECOVERY
    assert default.retry_window() >= 30 + 30 + RECOVERY  # the default function timeout is 30 s


@pytest.mark.parametrize(
    ("name", "delivery", "timeout"), policies(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_shipped_policy_outlasts_an_outage_and_a_dead_holders_claim(
    name: str, delivery: Delivery, timeout: int
) -> None:
    assert delivery.retry_window() >= OUTAGE + RECOVERY, (
        f"{name} retries for {delivery.retry_window():g}s only"
    )
    # InProgress (503) answers last until the claim of a killed holder ends: at most its timeout and a write
    assert delivery.retry_window() >= timeout + 2 + RECOVERY, (
        f"{name}: {delivery.retry_window():g}s < {timeout}s"
    )
    assert delivery.dead_letter, f"{name} would drop what it cannot deliver"


def test_retry_window_adds_up_the_waits() -> None:
    assert Delivery(retry=3, backoffPolicy="exponential", backoffDelay="PT0.5S").retry_window() == 3.5
    assert Delivery(retry=3, backoffPolicy="linear", backoffDelay="PT1S").retry_window() == 6.0
    assert Delivery(retry=0).retry_window() == 0.0
    assert Delivery().retry_window() == 127.5


def test_the_chart_and_the_kustomize_broker_default_to_the_same_policy() -> None:
    default = Delivery()
    values = yaml.safe_load((ROOT / "charts" / "kfaas" / "values.yaml").read_text(encoding="utf-8"))
    chart = values["broker"]["delivery"]
    assert (chart["retry"], chart["backoffPolicy"], chart["backoffDelay"]) == (
        default.retry,
        default.backoff_policy,
        default.backoff_delay,
    )
    broker = yaml.safe_load((ROOT / "k8s" / "base" / "500-broker.yaml").read_text(encoding="utf-8"))
    rendered = broker["spec"]["delivery"]
    assert (rendered["retry"], rendered["backoffPolicy"], rendered["backoffDelay"]) == (
        default.retry,
        default.backoff_policy,
        default.backoff_delay,
    )
