"""The Helm chart (charts/kfaas): lint, render every ci/ scenario, validate every object against its schema.

Core kinds are validated with kubernetes-validate (strict: unknown fields fail); Knative, eventing-rabbitmq
and RabbitMQ operator kinds against the CRD schemas in ``<repo>/../shared/crd-schemas`` (Draft 7, unknown
fields rejected). Without helm on PATH or without the CRD schemas those checks are skipped, saying so;
``KFAAS_REQUIRE_TOOLS=1`` turns the skips into failures.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import netpol
import pytest
import toolfinder
import yaml

from kfaas.spec import FunctionSpec, load_app

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kfaas"
FIXTURE = Path(__file__).parent / "fixtures" / "functions-values.yaml"
CRD_SCHEMAS = REPO.parent / "shared" / "crd-schemas"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
NAMESPACE = "kfaas-test"
CUSTOM_GROUPS = ("knative.dev", "rabbitmq.com")


def helm() -> str:
    return toolfinder.require("helm", "go install helm.sh/helm/v3/cmd/helm@v3.22.0")


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def values_args(scenario: str | None, *, fixture: bool = True) -> list[str]:
    args = ["-f", str(FIXTURE)] if fixture else []
    if scenario:
        args += ["-f", str(CHART / "ci" / scenario)]
    return args


@cache
def _render(
    scenario: str | None, extra: tuple[str, ...] = (), fixture: bool = True
) -> tuple[dict[str, Any], ...]:
    proc = run_helm(
        "template",
        "rel",
        str(CHART),
        "--namespace",
        NAMESPACE,
        *values_args(scenario, fixture=fixture),
        *extra,
    )
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def render(scenario: str | None = None, *extra: str, fixture: bool = True) -> list[dict[str, Any]]:
    return list(_render(scenario, tuple(extra), fixture))


def of_kind(objs: list[dict[str, Any]], kind: str, group: str = "") -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and o["apiVersion"].rpartition("/")[0] == group]


def by_name(objs: list[dict[str, Any]], kind: str, name: str, group: str = "") -> dict[str, Any]:
    found = [o for o in of_kind(objs, kind, group) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def is_custom(obj: dict[str, Any]) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    return group.endswith(CUSTOM_GROUPS)


def saga_engine() -> dict[str, Any]:
    """The rendered ``sagaEngine`` of the committed values (the engine's triggers and database access)."""
    engine: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())["sagaEngine"]
    return engine


def stream_sources() -> dict[str, Any]:
    sources: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())["streamSources"]
    return sources


def fixture_functions() -> dict[str, Any]:
    functions: dict[str, Any] = yaml.safe_load(FIXTURE.read_text())["functions"]
    return functions


# -- lint ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_strict_every_scenario(scenario: str) -> None:
    proc = run_helm("lint", "--strict", str(CHART), *values_args(scenario))
    assert "0 chart(s) failed" in proc.stdout


def test_lint_strict_committed_values_alone() -> None:
    proc = run_helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in proc.stdout


def test_ci_scenarios_cover_the_required_cases() -> None:
    assert {
        "default-values.yaml",
        "existing-services-values.yaml",
        "rabbitmq-broker-values.yaml",
        "provisioned-concurrency-values.yaml",
        "networkpolicies-values.yaml",
    } <= set(SCENARIOS)


# -- every rendered object against its real schema ----------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_core_objects_validate_strictly(scenario: str) -> None:
    version = kubernetes_validate.utils.latest_version()
    core = [o for o in render(scenario) if not is_custom(o)]
    assert core, "no core objects rendered"
    for obj in core:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


def crd_schema(obj: dict[str, Any]) -> dict[str, Any]:
    group, _, version = obj["apiVersion"].rpartition("/")
    path = CRD_SCHEMAS / group / f"{obj['kind'].lower()}_{version}.json"
    assert path.is_file(), f"no CRD schema for {obj['apiVersion']} {obj['kind']} ({path})"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_custom_objects_validate_against_crd_schemas(scenario: str) -> None:
    if not CRD_SCHEMAS.is_dir():
        toolfinder.missing(f"{CRD_SCHEMAS} is absent: Knative/RabbitMQ objects not validated")
    custom = [o for o in render(scenario) if is_custom(o)]
    assert custom, "no Knative objects rendered"
    for obj in custom:
        errors = sorted(jsonschema.Draft7Validator(crd_schema(obj)).iter_errors(obj), key=str)
        assert not errors, f"{obj['kind']} {obj['metadata']['name']}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
        )


def test_crd_validation_rejects_an_unknown_field() -> None:
    if not CRD_SCHEMAS.is_dir():
        toolfinder.missing(f"{CRD_SCHEMAS} is absent")
    trigger = next(o for o in render("default-values.yaml") if o["kind"] == "Trigger")
    broken = json.loads(json.dumps(trigger))
    broken["spec"]["subscriber"]["refs"] = broken["spec"]["subscriber"].pop("ref")
    assert list(jsonschema.Draft7Validator(crd_schema(broken)).iter_errors(broken))


# -- what the templates say ---------------------------------------------------------------------------------


def test_one_knative_service_per_function_plus_gateway_and_dead_letter() -> None:
    objs = render("default-values.yaml")
    names = {o["metadata"]["name"] for o in of_kind(objs, "Service", "serving.knative.dev")}
    assert names == set(fixture_functions()) | {"rel-kfaas-gateway", "rel-kfaas-dead-letter"}


def test_disabled_function_is_left_out() -> None:
    objs = render("default-values.yaml", "--set", "functions.get-user.enabled=false")
    assert "get-user" not in {o["metadata"]["name"] for o in objs}
    assert "rel-get-user-mongodb" not in {o["metadata"]["name"] for o in objs}


def test_function_service_follows_its_description() -> None:
    fn = fixture_functions()["get-user"]
    ksvc = by_name(render("default-values.yaml"), "Service", "get-user", "serving.knative.dev")
    template = ksvc["spec"]["template"]
    notes = template["metadata"]["annotations"]
    assert notes["autoscaling.knative.dev/min-scale"] == str(fn["scaling"]["min"])
    assert notes["autoscaling.knative.dev/max-scale"] == str(fn["scaling"]["max"])
    assert notes["autoscaling.knative.dev/target"] == str(fn["scaling"]["target"])
    assert notes["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] == fn["scaling"]["retention"]
    assert template["spec"]["timeoutSeconds"] == fn["timeout"]
    (container,) = template["spec"]["containers"]
    assert container["image"] == "kfaas/get-user:0.1.0"
    assert container["resources"]["limits"]["memory"] == fn["memory"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/liveness"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env["MONGODB_URL"] == {"name": "rel-get-user-mongodb", "key": "url"}
    assert "AMQP_URL" not in env


def test_provisioned_concurrency_sets_min_scale() -> None:
    objs = render("provisioned-concurrency-values.yaml", "--set", "functions.get-user.scaling.min=2")
    ksvc = by_name(objs, "Service", "get-user", "serving.knative.dev")
    assert ksvc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "2"
    gateway = by_name(objs, "Service", "rel-kfaas-gateway", "serving.knative.dev")
    assert gateway["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"


def test_function_env_configmap() -> None:
    objs = render("default-values.yaml")
    data = by_name(objs, "ConfigMap", "place-order-env")["data"]
    assert data["FUNCTION_SOURCE"] == "/app/function/main.py"
    assert data["FUNCTION_TARGET"] == "app"
    assert "FUNCTION_SIGNATURE_TYPE" not in data  # http: detected (ASGI app or http function)
    assert data["KFAAS_FUNCTION"] == "place-order"
    assert data["ORDERS_QUEUE"] == "orders"
    assert "PORT" not in data  # Knative sets PORT and refuses it in a container's env
    cloud = by_name(objs, "ConfigMap", "process-order-env")["data"]
    assert cloud["FUNCTION_SIGNATURE_TYPE"] == "cloudevent"
    ksvc = by_name(objs, "Service", "process-order", "serving.knative.dev")
    assert cloud["KFAAS_TIMEOUT"] == str(ksvc["spec"]["template"]["spec"]["timeoutSeconds"])


def _pod_specs(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for o in objs:
        if o["kind"] == "Pod":
            specs.append((o["metadata"]["name"], o["spec"]))
        elif o["kind"] in {"StatefulSet", "Job"} or (o["kind"] == "Service" and is_custom(o)):
            specs.append((o["metadata"]["name"], o["spec"]["template"]["spec"]))
    return specs


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_meets_pod_security_restricted(scenario: str) -> None:
    specs = _pod_specs(render(scenario))
    assert specs
    for name, spec in specs:
        pod = spec.get("securityContext", {})
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, name
            assert sc.get("allowPrivilegeEscalation") is False, name
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
            assert sc.get("readOnlyRootFilesystem") is True, name
            seccomp = sc.get("seccompProfile", pod.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", name


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_triggers_use_only_attribute_filters_and_always_dead_letter(scenario: str) -> None:
    objs = render(scenario)
    triggers = of_kind(objs, "Trigger", "eventing.knative.dev")
    expected = {f"{name}-{t['name']}" for name, fn in fixture_functions().items() for t in fn["triggers"]}
    expected |= {f"rel-kfaas-saga-{t['name']}" for t in saga_engine()["triggers"]}
    expected |= {f"{name}-{t['name']}" for name, c in stream_sources().items() for t in c["triggers"]}
    assert {t["metadata"]["name"] for t in triggers} == expected
    for t in triggers:
        spec = t["spec"]
        assert "filters" not in spec
        assert set(spec.get("filter", {})) <= {"attributes"}
        assert set(spec["delivery"]) == {"retry", "backoffPolicy", "backoffDelay", "deadLetterSink"}
        assert spec["subscriber"]["ref"]["kind"] == "Service"


def test_trigger_carries_its_description() -> None:
    fn = fixture_functions()["notify-email"]
    (trigger_spec,) = fn["triggers"]
    t = by_name(render("default-values.yaml"), "Trigger", "notify-email-processed", "eventing.knative.dev")
    assert t["spec"]["filter"]["attributes"] == trigger_spec["filter"]
    assert t["spec"]["delivery"]["retry"] == trigger_spec["delivery"]["retry"]
    assert t["spec"]["delivery"]["backoffDelay"] == trigger_spec["delivery"]["backoffDelay"]
    assert t["spec"]["delivery"]["deadLetterSink"]["ref"]["name"] == "rel-kfaas-dead-letter"
    assert t["spec"]["delivery"]["deadLetterSink"]["uri"] == "/notify-email-processed"
    assert t["metadata"]["annotations"]["rabbitmq.eventing.knative.dev/parallelism"] == str(
        trigger_spec["parallelism"]
    )


def test_dead_letter_uri_replaces_the_sink() -> None:
    objs = render("provisioned-concurrency-values.yaml")
    assert "rel-kfaas-dead-letter" not in {o["metadata"]["name"] for o in objs}
    for t in of_kind(objs, "Trigger", "eventing.knative.dev"):
        assert t["spec"]["delivery"]["deadLetterSink"] == {"uri": "http://dead-letters.ops.svc.cluster.local"}


def test_sources_and_sink_binding() -> None:
    objs = render("default-values.yaml")
    queue = by_name(objs, "RabbitmqSource", "process-order-orders", "sources.knative.dev")
    assert queue["spec"]["rabbitmqResourcesConfig"]["queueName"] == "orders"
    assert queue["spec"]["rabbitmqResourcesConfig"]["predeclared"] is True
    assert queue["spec"]["sink"]["ref"] == {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "name": "default",
    }
    assert queue["spec"]["rabbitmqClusterReference"] == {"connectionSecret": {"name": "rel-kfaas-rabbitmq"}}
    ping = by_name(objs, "PingSource", "daily-report-nightly", "sources.knative.dev")
    assert ping["spec"]["schedule"] == "0 1 * * *"
    assert ping["spec"]["timezone"] == "Europe/Berlin"
    assert json.loads(ping["spec"]["data"]) == {"to": "reports@kfaas.local"}
    binding = by_name(objs, "SinkBinding", "process-order-sink", "sources.knative.dev")
    assert binding["spec"]["subject"]["name"] == "process-order"


def test_a_bucket_source_runs_as_a_deployment_with_its_sink_binding() -> None:
    objs = render("default-values.yaml")
    deployment = by_name(objs, "Deployment", "resize-image-uploads", "apps")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [
        "bucket-source",
        "--functions",
        "/app/functions",
        "--source",
        "resize-image/uploads",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["AMQP_URL_FILE"]["value"] == "/var/run/secrets/kfaas/rabbitmq/url"
    assert env["KFAAS_NAMESPACE"]["value"] == NAMESPACE
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["rabbitmq"]["secret"]["secretName"] == "rel-kfaas-rabbitmq"
    assert deployment["spec"]["template"]["metadata"]["labels"]["kfaas.dev/uses-rabbitmq"] == "true"
    binding = by_name(objs, "SinkBinding", "resize-image-uploads-sink", "sources.knative.dev")
    assert binding["spec"]["subject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "resize-image-uploads",
    }
    ksvc = by_name(objs, "Service", "resize-image", "serving.knative.dev")
    fn_env = {e["name"]: e for e in ksvc["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert fn_env["S3_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "kfaas-s3",
        "key": "S3_ENDPOINT_URL",
    }


def test_mt_broker_by_default_rabbitmq_broker_on_request() -> None:
    broker = by_name(render("default-values.yaml"), "Broker", "default", "eventing.knative.dev")
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "MTChannelBasedBroker"
    assert "config" not in broker["spec"]
    assert broker["spec"]["delivery"]["deadLetterSink"]["ref"]["name"] == "rel-kfaas-dead-letter"
    assert broker["spec"]["delivery"]["deadLetterSink"]["uri"] == "/broker-default"

    objs = render("rabbitmq-broker-values.yaml")
    broker = by_name(objs, "Broker", "default", "eventing.knative.dev")
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "RabbitMQBroker"
    config = by_name(objs, "RabbitmqBrokerConfig", broker["spec"]["config"]["name"], "eventing.knative.dev")
    assert config["spec"]["rabbitmqClusterReference"]["name"] == "rel-kfaas-rabbitmq"
    assert config["spec"]["queueType"] == "quorum"
    by_name(objs, "RabbitmqCluster", "rel-kfaas-rabbitmq", "rabbitmq.com")
    assert by_name(objs, "Queue", "process-order-orders", "rabbitmq.com")["spec"]["type"] == "quorum"
    assert not of_kind(objs, "StatefulSet", "apps") or all(
        s["metadata"]["name"] != "rel-kfaas-rabbitmq" for s in of_kind(objs, "StatefulSet", "apps")
    )


def test_existing_services_deploy_no_databases() -> None:
    objs = render("existing-services-values.yaml")
    assert not of_kind(objs, "StatefulSet", "apps")
    secret = by_name(objs, "Secret", "rel-get-user-mongodb")
    url = secret["stringData"]["url"]
    assert url.startswith("mongodb://get-user:")
    assert "@mongo-0.mongo.data.svc.cluster.local:27017,mongo-1" in url
    assert url.endswith("/kfaas?authSource=kfaas&replicaSet=rs0")
    job = by_name(objs, "Job", "rel-kfaas-mongodb-users", "batch")
    assert _secret_files(job)["ADMIN_URL"] == ("mongodb-admin", "url")
    ksvc = by_name(objs, "Service", "place-order", "serving.knative.dev")
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in ksvc["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["AMQP_URL"] == {"name": "rabbitmq-credentials", "key": "url"}


def test_existing_mongodb_without_admin_leaves_users_to_the_operator() -> None:
    objs = render("existing-services-values.yaml", "--set", "mongodb.existing.adminSecret=")
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert ("Job", "rel-kfaas-mongodb-users") not in names
    assert ("Secret", "rel-get-user-mongodb") not in names


def test_one_mongodb_user_per_function_with_its_role() -> None:
    objs = render("default-values.yaml")
    script = by_name(objs, "ConfigMap", "rel-kfaas-mongodb-users")["data"]["users.js"]
    for name, fn in fixture_functions().items():
        if "mongodb" not in fn["uses"]:
            continue
        collections = list(fn["database"]["collections"])
        if fn["database"]["role"] == "readWrite" and "kfaas_idempotency" not in collections:
            collections.append("kfaas_idempotency")
        assert (
            f'upsert("{name}", "{fn["database"]["role"]}", {json.dumps(collections, separators=(",", ":"))});'
            in script
        )
        password = by_name(objs, "Secret", f"rel-{name}-mongodb")["stringData"]["password"]
        assert len(password) == 24


def _secret_files(job: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """File name -> (Secret, key) of the users Job's projected secrets volume."""
    (volume,) = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets"]
    return {
        item["path"]: (source["secret"]["name"], item["key"])
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }


def test_the_users_job_reads_every_secret_from_files() -> None:
    """No password on mongosh's command line (the process list shows it) nor in its environment."""
    job = by_name(render("default-values.yaml"), "Job", "rel-kfaas-mongodb-users", "batch")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["mongosh", "--quiet", "--nodb", "--file", "/scripts/users.js"]
    assert all("valueFrom" not in e for e in container.get("env", [])), container["env"]
    files = _secret_files(job)
    assert files["ADMIN_URL"] == ("rel-kfaas-mongodb", "adminUrl")
    for name, fn in fixture_functions().items():
        if "mongodb" in fn["uses"]:
            assert files[f"PASSWORD_{name.upper().replace('-', '_')}"] == (f"rel-{name}-mongodb", "password")
    mongodb = by_name(render("default-values.yaml"), "StatefulSet", "rel-kfaas-mongodb", "apps")
    env = {e["name"]: e for e in mongodb["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MONGO_INITDB_ROOT_PASSWORD_FILE"]["value"] == "/kfaas/root/rootPassword"
    assert "MONGO_INITDB_ROOT_PASSWORD" not in env


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_is_tokenless_and_sized(scenario: str) -> None:
    """No pod calls the Kubernetes API, so none gets a service account token; every container has CPU and
    memory requests and a memory limit (the gateway, the sink, MongoDB, RabbitMQ, the Job, the test pod)."""
    found = netpol.pods(render(scenario))
    assert {"rel-kfaas-gateway", "rel-kfaas-test-readiness"} <= {
        p.name for p in found
    } or scenario != "default-values.yaml"
    for pod in found:
        where = f"{pod.kind} {pod.name}"
        assert pod.spec.get("automountServiceAccountToken") is False, where
        for c in pod.spec["containers"]:
            assert {"cpu", "memory"} <= set(c.get("resources", {}).get("requests", {})), where
            assert "memory" in c["resources"].get("limits", {}), where
        netpol.check_uid_and_probes(pod, netpol.IMAGE_USERS.get(pod.name.removeprefix("rel-kfaas-")))


def test_network_policies_are_on_by_default_and_can_be_turned_off() -> None:
    for scenario in SCENARIOS:
        policies = netpol.policies(render(scenario))
        deny = [p for p in policies if p["spec"]["podSelector"] == {}]
        assert [p["metadata"]["name"] for p in deny] == ["rel-kfaas-default-deny-ingress"], scenario
        assert "ingress" not in deny[0]["spec"]
    assert not netpol.policies(render("default-values.yaml", "--set", "networkPolicies.enabled=false"))


def _pod(objs: list[dict[str, Any]], name: str) -> netpol.Pod:
    (pod,) = [p for p in netpol.pods(objs) if p.name == name]
    return pod


@pytest.mark.parametrize("scenario", ["default-values.yaml", "rabbitmq-broker-values.yaml"])
def test_network_policies_follow_who_calls_whom(scenario: str) -> None:
    objs = render(scenario)
    functions = fixture_functions()
    stranger = netpol.Peer({"app": "anything-else"})
    kourier, activator = netpol.Peer(namespace="kourier-system"), netpol.Peer(namespace="knative-serving")
    gateway = _pod(objs, "rel-kfaas-gateway")
    for name in [*functions, "rel-kfaas-gateway", "rel-kfaas-dead-letter"]:
        pod = _pod(objs, name)
        assert netpol.allowed(objs, pod, kourier, 8012), name
        assert netpol.allowed(objs, pod, activator, 8013), name
        assert netpol.allowed(objs, pod, activator, 9090), name
        for peer in (stranger, netpol.Peer(gateway.labels), netpol.Peer(namespace="default")):
            assert not netpol.allowed(objs, pod, peer, 8012), name
            assert not netpol.allowed(objs, pod, peer, 8080), name
    mongodb = _pod(objs, "rel-kfaas-mongodb")
    for name, fn in functions.items():
        peer = netpol.Peer(_pod(objs, name).labels)
        assert netpol.allowed(objs, mongodb, peer, 27017) is ("mongodb" in fn["uses"]), name
    assert netpol.allowed(objs, mongodb, netpol.Peer(_pod(objs, "rel-kfaas-mongodb-users").labels), 27017)
    assert not netpol.allowed(objs, mongodb, netpol.Peer(gateway.labels), 27017)
    adapter = netpol.Peer({"eventing.knative.dev/source": "rabbitmq-source-controller"})
    if scenario == "default-values.yaml":
        rabbitmq = _pod(objs, "rel-kfaas-rabbitmq")
        for name, fn in functions.items():
            peer = netpol.Peer(_pod(objs, name).labels)
            assert netpol.allowed(objs, rabbitmq, peer, 5672) is ("rabbitmq" in fn["uses"]), name
        assert netpol.allowed(objs, rabbitmq, netpol.Peer(_pod(objs, "rel-kfaas-dead-letter").labels), 5672)
        assert netpol.allowed(objs, rabbitmq, adapter, 5672)  # process-order has a queue source
        assert not netpol.allowed(objs, rabbitmq, stranger, 5672)
        return
    ingress = netpol.Pod(
        "Deployment", "default-broker-ingress", {"eventing.knative.dev/brokerRole": "ingress"}, {}
    )
    for name, fn in functions.items():
        assert netpol.allowed(objs, ingress, netpol.Peer(_pod(objs, name).labels), 8080) is bool(
            fn["publishes"]
        ), name
    assert netpol.allowed(objs, ingress, adapter, 8080)
    assert netpol.allowed(objs, ingress, netpol.Peer(namespace="knative-eventing"), 8080)
    assert not netpol.allowed(objs, ingress, stranger, 8080)


def test_network_policies_let_in_what_the_values_add() -> None:
    policies = of_kind(render("networkpolicies-values.yaml"), "NetworkPolicy", "networking.k8s.io")
    rabbit = next(p for p in policies if p["metadata"]["name"] == "rel-kfaas-rabbitmq")
    peers = rabbit["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"eventing.knative.dev/broker": "default"}}} in peers


def test_dead_letter_sink_keeps_dead_letters_in_rabbitmq() -> None:
    objs = render("networkpolicies-values.yaml")
    sink = by_name(objs, "Service", "rel-kfaas-dead-letter", "serving.knative.dev")["spec"]["template"]
    (container,) = sink["spec"]["containers"]
    assert container["image"].startswith("kfaas/platform:")
    assert container["args"][:3] == ["dead-letters", "--functions", "/app/functions"]
    (amqp,) = [e for e in container["env"] if e["name"] == "AMQP_URL"]
    assert amqp["valueFrom"]["secretKeyRef"] == {"name": "rel-kfaas-rabbitmq", "key": "url"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    assert container["securityContext"]["runAsNonRoot"] is True
    # the RabbitMQ policy lets the sink in by the label it lets the functions in by
    rabbit = by_name(objs, "NetworkPolicy", "rel-kfaas-rabbitmq", "networking.k8s.io")
    labels = sink["metadata"]["labels"]
    allowed = [
        p["podSelector"]["matchLabels"] for p in rabbit["spec"]["ingress"][0]["from"] if "podSelector" in p
    ]
    assert any(sel.items() <= labels.items() for sel in allowed)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_selectors_carry_no_chart_version(scenario: str) -> None:
    for obj in render(scenario):
        spec = obj.get("spec", {})
        selectors = [spec.get("selector", {}).get("matchLabels"), spec.get("selector")]
        selectors.append(spec.get("template", {}).get("metadata", {}).get("labels"))
        for sel in filter(None, selectors):
            assert "helm.sh/chart" not in sel, obj["metadata"]["name"]
            assert "app.kubernetes.io/version" not in sel, obj["metadata"]["name"]


def test_helm_test_calls_the_gateway_readiness() -> None:
    pod = by_name(render("default-values.yaml"), "Pod", "rel-kfaas-test-readiness")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["args"][-1] == (
        f"http://rel-kfaas-gateway.{NAMESPACE}.svc.cluster.local/health/readiness"
    )


# -- values schema ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("broker.clas=RabbitMQBroker", "clas"),
        ("broker.class=Kafka", "class"),
        ("functions.get-user.scalling.min=1", "scalling"),
        ("rabbitmq.mode=helm", "mode"),
    ],
)
def test_values_schema_rejects_typos(setting: str, complaint: str) -> None:
    proc = run_helm("template", "rel", str(CHART), *values_args(None), "--set", setting, check=False)
    assert proc.returncode != 0
    assert complaint in proc.stderr


def _function_schema() -> dict[str, Any]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    function: dict[str, Any] = schema["properties"]["functions"]["additionalProperties"]
    return function


def test_fixture_functions_are_valid_descriptions() -> None:
    validator = jsonschema.Draft7Validator(_function_schema())
    for name, values in fixture_functions().items():
        validator.validate(values)
        FunctionSpec.model_validate({k: v for k, v in values.items() if k != "image"} | {"name": name})


def test_rendered_function_values_fit_the_values_schema() -> None:
    """The contract: kfaas.render.chart.function_values of every real function passes values.schema.json."""
    from kfaas.render.chart import function_values

    functions = REPO / "functions"
    if not functions.is_dir():
        pytest.skip("no functions/ folder")
    app = load_app(functions)
    assert app.functions
    validator = jsonschema.Draft7Validator(_function_schema())
    for spec in app.functions:
        validator.validate(function_values(spec))


def test_committed_values_render_with_the_rendered_block() -> None:
    objs = render(None, fixture=False)
    assert of_kind(objs, "Broker", "eventing.knative.dev")
    declared = yaml.safe_load((CHART / "values.yaml").read_text())["functions"] or {}
    ksvcs = {o["metadata"]["name"] for o in of_kind(objs, "Service", "serving.knative.dev")}
    assert set(declared) <= ksvcs


def test_saga_engine_deployment_triggers_and_user() -> None:
    objs = render("networkpolicies-values.yaml")
    deployment = by_name(objs, "Deployment", "rel-kfaas-saga", "apps")
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["saga", "--functions", "/app/functions"]
    (url,) = [e for e in container["env"] if e["name"] == "MONGODB_URL_FILE"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "mongodb"]
    assert url["value"] == mount["mountPath"] + "/url"
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "mongodb"]
    assert volume["secret"]["secretName"] == "rel-kfaas-saga-mongodb"
    assert by_name(objs, "Secret", "rel-kfaas-saga-mongodb")["stringData"]["username"] == "kfaas-saga"
    users = by_name(objs, "ConfigMap", "rel-kfaas-mongodb-users")["data"]["users.js"]
    assert 'upsert("kfaas-saga", "readWrite", ["saga_executions"' in users
    results = by_name(objs, "Trigger", "rel-kfaas-saga-results", "eventing.knative.dev")
    assert results["spec"]["filter"]["attributes"] == {"type": "com.kfaas.task.result"}
    assert results["spec"]["subscriber"]["ref"] == {
        "apiVersion": "v1",
        "kind": "Service",
        "name": "rel-kfaas-saga",
    }
    sink = by_name(objs, "SinkBinding", "rel-kfaas-saga-sink", "sources.knative.dev")
    assert sink["spec"]["subject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "rel-kfaas-saga",
    }
    policy = by_name(objs, "NetworkPolicy", "rel-kfaas-saga", "networking.k8s.io")
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    # the MongoDB policy lets the engine in by the label it lets the functions in by
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["kfaas.dev/uses-mongodb"] == "true"


def test_no_saga_engine_without_state_machines() -> None:
    objs = render("default-values.yaml", "--set", "saga.enabled=false")
    assert not [o for o in of_kind(objs, "Deployment", "apps") if o["metadata"]["name"] == "rel-kfaas-saga"]
