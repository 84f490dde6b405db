"""docker-compose.yml: valid against the Compose Specification, healthy dependencies, fail-fast variables."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml
from _render_support import COMPOSE_SCHEMA, FIXTURE_FUNCTIONS, ROOT, missing

from kfaas.render.compose import render_compose
from kfaas.spec import load_app

_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(:?[?-][^}]*)?\}")


def rendered(which: str) -> tuple[dict[str, Any], str]:
    if which == "fixtures":
        files = render_compose(load_app(FIXTURE_FUNCTIONS))
        return yaml.safe_load(files["docker-compose.yml"]), files[".env.example"]
    return (
        yaml.safe_load((ROOT / "docker-compose.yml").read_text()),
        (ROOT / ".env.example").read_text(),
    )


@pytest.fixture(params=["fixtures", "committed"])
def compose(request: pytest.FixtureRequest) -> tuple[dict[str, Any], str]:
    return rendered(request.param)


def test_matches_the_compose_specification(compose: tuple[dict[str, Any], str]) -> None:
    if not COMPOSE_SCHEMA.is_file():
        missing(str(COMPOSE_SCHEMA))
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    assert not [e.message for e in validator.iter_errors(compose[0])]
    broken = {**compose[0], "services": {"x": {"image": "a", "helthcheck": {}}}}
    assert list(validator.iter_errors(broken)), "the schema must reject an unknown service key"


def test_every_service_is_healthchecked_and_waited_for(compose: tuple[dict[str, Any], str]) -> None:
    services = compose[0]["services"]
    one_shot = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shot == {"mongodb-users"}
    # A Lambda image's container has no server to check: its health is its kfaas container's readiness
    # (which waits for the image's runtime client to poll), so it starts once that container has started.
    runtimes = {name for name, s in services.items() if str(s.get("network_mode", "")).startswith("service:")}
    for name in runtimes:
        assert services[name]["network_mode"] == f"service:{name.removesuffix('-runtime')}"
        assert "healthcheck" in services[name.removesuffix("-runtime")]
    for name, service in services.items():
        if name not in one_shot | runtimes:
            assert service["healthcheck"]["test"][0] == "CMD", name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency in one_shot else "service_healthy"
            if name in runtimes and dependency == name.removesuffix("-runtime"):
                expected = "service_started"
            assert condition == {"condition": expected}, name


def test_missing_variables_fail_fast_and_env_example_sets_them(compose: tuple[dict[str, Any], str]) -> None:
    text = yaml.safe_dump(compose[0])
    required = {m.group(1) for m in _VARIABLE.finditer(text) if (m.group(2) or "").startswith(":?")}
    assert {"MONGO_ROOT_PASSWORD", "RABBITMQ_PASSWORD"} <= required
    defined = {line.split("=", 1)[0] for line in compose[1].splitlines() if line and not line.startswith("#")}
    assert required <= defined, f"not in .env.example: {sorted(required - defined)}"
    # Every `$` compose would interpolate is a well-formed variable; a literal `$` is escaped as `$$`.
    stray = re.sub(r"\$\$", "", _VARIABLE.sub("", text))
    assert "$" not in stray


def test_functions_get_only_what_they_use() -> None:
    services = rendered("fixtures")[0]["services"]
    get_user = services["get-user"]
    assert get_user["build"]["args"] == {"FUNCTION": "get-user"}
    assert get_user["image"] == "kfaas/get-user:0.1.0"
    assert get_user["read_only"] is True
    env = get_user["environment"]
    assert env["MONGODB_URL"].startswith("mongodb://get-user:${MONGO_PASSWORD_GET_USER:?")
    assert "AMQP_URL" not in env
    assert "K_SINK" not in env
    assert "FUNCTION_SIGNATURE_TYPE" not in env  # http: detected
    assert services["place-order"]["environment"]["AMQP_URL"].startswith("amqp://kfaas:")
    assert "MONGODB_URL" not in services["place-order"]["environment"]
    notify = services["notify-email"]["environment"]
    assert notify["K_SINK"] == "http://broker:8080/default"
    assert notify["SMTP_HOST"] == "mailpit"
    assert notify["FUNCTION_SIGNATURE_TYPE"] == "cloudevent"
    assert services["process-order"]["environment"]["KFAAS_TIMEOUT"] == "60"  # its description's timeout
    assert services["gateway"]["environment"]["KFAAS_CORS_ORIGINS"] == "*"
    assert services["gateway"]["ports"] == ["127.0.0.1:8080:8080"]
    assert set(services["gateway"]["depends_on"]) == {"get-user", "create-user", "place-order"}
    assert services["broker"]["environment"]["KFAAS_FUNCTION_URL_TEMPLATE"] == "http://{name}:8080"
    users = services["mongodb-users"]["environment"]
    assert "KFAAS_PASSWORD_GET_USER" in users
    assert "KFAAS_PASSWORD_PLACE_ORDER" not in users


def test_the_real_functions_are_all_in_compose() -> None:
    app = load_app(ROOT / "functions")
    services = rendered("committed")[0]["services"]
    assert {fn.name for fn in app.functions} <= set(services)


def test_ports_bind_loopback_only(compose: tuple[dict[str, Any], str]) -> None:
    for name, service in compose[0]["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), name


def test_env_example_holds_dev_values_only() -> None:
    env = rendered("committed")[1]
    values = [line.split("=", 1)[1] for line in env.splitlines() if "PASSWORD" in line.split("=", 1)[0]]
    assert values
    assert all(v.startswith("dev-only-") for v in values)


def test_the_object_store_publishes_to_the_exchange_the_bucket_sources_read() -> None:
    services = rendered("committed")[0]["services"]
    store = services["versitygw"]
    command = store["command"]
    assert command[command.index("--event-rabbitmq-exchange") + 1] == "kfaas.s3-events"
    assert command[command.index("--event-rabbitmq-url") + 1].startswith("amqp://kfaas:${RABBITMQ_PASSWORD:?")
    assert command[-2:] == ["posix", "/data"]
    # the buckets the descriptions name exist before it serves (posix: a bucket is a folder)
    assert "mkdir -p /data/thumbnails /data/uploads &&" in store["entrypoint"][2]
    # it starts after the broker, whose bucket sources declare the exchange it publishes to
    assert store["depends_on"] == {"broker": {"condition": "service_healthy"}}
    resize = services["resize-image"]
    assert resize["environment"]["S3_ENDPOINT_URL"] == "http://versitygw:7070"
    assert resize["depends_on"]["versitygw"] == {"condition": "service_healthy"}
