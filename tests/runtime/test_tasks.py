"""Task requests (docs/runtime.md): the result or the failure comes back as a correlated reply event.

Through a real ``kfaas serve`` process: the answer a broker sees is what matters.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "test_functions" / "tasks" / "main.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def function_url() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kfaas",
            "serve",
            "--source",
            str(SAMPLE),
            "--target",
            "charge",
            "--signature-type",
            "cloudevent",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        env={"PATH": "/usr/bin:/bin", "KFAAS_FUNCTION": "process-payment"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url + "/health/readiness", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None, "kfaas serve exited"
        assert time.monotonic() < deadline, "kfaas serve did not start"
        time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


def _request(data: dict[str, object], event_type: str = "com.kfaas.task.request") -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": "order-saga:o-1/3.0",
        "ce-source": "/kfaas/saga/order-saga",
        "ce-type": event_type,
        "ce-kfaasfunction": "process-payment",
        "ce-kfaasexecution": "order-saga:o-1",
        "content-type": "application/json",
    }


def test_a_returned_value_is_the_result_reply(function_url: str) -> None:
    body = {"orderId": "o-1", "amount": 25}
    answer = httpx.post(function_url, headers=_request(body), content=json.dumps(body))
    assert answer.status_code == 200
    assert answer.headers["ce-type"] == "com.kfaas.task.result"
    assert answer.headers["ce-kfaasrequest"] == "order-saga:o-1/3.0"
    assert answer.headers["ce-kfaasexecution"] == "order-saga:o-1"
    assert answer.headers["ce-source"] == "/kfaas/process-payment"
    assert answer.json() == {"charged": 25, "orderId": "o-1"}


def test_a_raised_exception_is_the_error_reply_named_by_its_class(function_url: str) -> None:
    body = {"orderId": "o-2", "amount": 25, "card": "declined"}
    answer = httpx.post(function_url, headers=_request(body), content=json.dumps(body))
    assert answer.status_code == 200
    assert answer.headers["ce-type"] == "com.kfaas.task.error"
    assert answer.headers["ce-kfaasrequest"] == "order-saga:o-1/3.0"
    assert answer.json() == {"errorType": "PaymentError", "errorMessage": "card declined for order o-2"}


def test_service_unavailable_stays_a_retryable_503(function_url: str) -> None:
    body = {"orderId": "o-3", "amount": 25, "card": "busy"}
    answer = httpx.post(function_url, headers=_request(body), content=json.dumps(body))
    assert answer.status_code == 503


def test_other_events_keep_the_plain_contract(function_url: str) -> None:
    body = {"orderId": "o-4", "amount": 25, "card": "declined"}
    answer = httpx.post(function_url, headers=_request(body, "com.example.other"), content=json.dumps(body))
    assert answer.status_code == 500
    assert "PaymentError" in answer.json()["error"]
