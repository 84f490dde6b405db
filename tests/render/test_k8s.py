"""k8s/: every overlay builds with kustomize and every object passes its real schema, unknown fields rejected.

Built twice: from the sample descriptions under fixtures/ (rendered into a temporary copy of k8s/) and from
the committed tree (what `kubectl apply -k` would apply today).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import netpol
import pytest
import toolfinder
import yaml
from _render_support import (
    CRD_SCHEMAS,
    FIXTURE_FUNCTIONS,
    KUBERNETES_VERSION,
    ROOT,
    crd_schema,
    kustomize_command,
    missing,
)

from kfaas.render import render
from kfaas.spec import load_app

OVERLAYS = ["kind", "minikube", "production"]


@pytest.fixture(scope="module")
def fixture_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    shutil.copytree(ROOT / "k8s", root / "k8s")
    files = render(load_app(FIXTURE_FUNCTIONS), root, ["k8s"])
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    return root


def build(root: Path, overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [*kustomize_command(), str(root / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate(obj: dict[str, Any]) -> None:
    """Raise if ``obj`` does not match its schema; fail when no schema covers its kind."""
    where = f"{obj['kind']} {obj['metadata'].get('name')}"
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        return
    except kubernetes_validate.SchemaNotFoundError:
        pass
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")
    if not CRD_SCHEMAS.is_dir():
        missing(f"{CRD_SCHEMAS} (schemas of the Knative/RabbitMQ kinds)")
    schema = crd_schema(obj["apiVersion"], obj["kind"])
    assert schema is not None, f"{where}: no schema for {obj['apiVersion']} {obj['kind']}"
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=str)
    assert not errors, f"{where}: " + "; ".join(f"{e.message} at {list(e.path)}" for e in errors[:5])


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("tree", ["fixtures", "committed"])
def test_every_object_matches_its_schema(overlay: str, tree: str, fixture_tree: Path) -> None:
    docs = build(fixture_tree if tree == "fixtures" else ROOT, overlay)
    assert len(docs) > 10
    for obj in docs:
        validate(obj)


def test_validation_rejects_unknown_fields(fixture_tree: Path) -> None:
    """The checks above can fail: an unknown field in a core kind and in a Knative kind is refused."""
    docs = build(fixture_tree, "kind")
    deployment = copy.deepcopy(by_kind(docs, "Deployment")["mailpit"])
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    if not CRD_SCHEMAS.is_dir():
        missing(f"{CRD_SCHEMAS}")
    trigger = copy.deepcopy(next(iter(by_kind(docs, "Trigger").values())))
    trigger["spec"]["delivery"]["timeout"] = "PT10S"  # not in this Trigger CRD
    schema = crd_schema(trigger["apiVersion"], "Trigger")
    assert schema is not None
    assert list(jsonschema.Draft7Validator(schema).iter_errors(trigger))
    ksvc = copy.deepcopy(by_kind(docs, "Service")["get-user"])
    ksvc["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # misspelt
    schema = crd_schema(ksvc["apiVersion"], "Service")
    assert schema is not None
    assert list(jsonschema.Draft7Validator(schema).iter_errors(ksvc))


def test_dead_letter_sink_keeps_dead_letters_in_rabbitmq(fixture_tree: Path) -> None:
    docs = build(fixture_tree, "kind")
    sink = by_kind(docs, "Service")["kfaas-dead-letters"]["spec"]["template"]
    (container,) = sink["spec"]["containers"]
    assert container["image"].startswith("kfaas/platform:")
    assert container["args"] == ["dead-letters", "--functions", "/app/functions"]
    (amqp,) = [e for e in container["env"] if e["name"] == "AMQP_URL"]
    assert amqp["valueFrom"]["secretKeyRef"] == {"name": "kfaas-rabbitmq", "key": "AMQP_URL"}
    assert container["securityContext"]["runAsNonRoot"] is True
    # the RabbitMQ policy lets the sink in (test_network_policies_follow_who_calls_whom checks the rest)
    (rabbitmq,) = [p for p in netpol.pods(docs) if p.name == "rabbitmq"]
    (pod,) = [p for p in netpol.pods(docs) if p.name == "kfaas-dead-letters"]
    assert netpol.allowed(docs, rabbitmq, netpol.Peer(pod.labels), 5672)


def test_knative_service_follows_the_description(fixture_tree: Path) -> None:
    docs = build(fixture_tree, "kind")
    ksvcs = {
        n: d for n, d in by_kind(docs, "Service").items() if d["apiVersion"].startswith("serving.knative")
    }
    app = load_app(FIXTURE_FUNCTIONS)
    assert set(ksvcs) == {fn.name for fn in app.functions} | {"gateway", "kfaas-dead-letters"}
    get_user = ksvcs["get-user"]["spec"]["template"]
    annotations = get_user["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "1"
    assert annotations["autoscaling.knative.dev/max-scale"] == "5"
    assert annotations["autoscaling.knative.dev/target"] == "50"
    assert annotations["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] == "5m"
    assert get_user["metadata"]["labels"]["kfaas.dev/mongodb"] == "client"
    container = get_user["spec"]["containers"][0]
    assert container["image"] == "kfaas/get-user:0.1.0"  # as built and loaded into the node
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/liveness"
    env = {e["name"]: e for e in container["env"]}
    assert env["MONGODB_URL"]["valueFrom"]["secretKeyRef"]["name"] == "kfaas-get-user-mongodb"
    assert "AMQP_URL" not in env
    assert "PORT" not in env
    assert "K_SINK" not in env
    assert env["FUNCTION_TARGET"]["value"] == "app"
    assert env["KFAAS_TIMEOUT"]["value"] == str(get_user["spec"]["timeoutSeconds"])  # the runtime's bound
    process = ksvcs["process-order"]["spec"]["template"]["spec"]
    assert process["timeoutSeconds"] == 60
    assert (
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period"
        not in (ksvcs["process-order"]["spec"]["template"]["metadata"]["annotations"])
    )
    place = ksvcs["place-order"]["spec"]["template"]
    assert place["spec"]["containers"][0]["resources"]["limits"]["memory"] == "128Mi"
    assert place["metadata"]["labels"]["kfaas.dev/rabbitmq"] == "client"
    notify_env = {
        e["name"]: e for e in ksvcs["notify-email"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert notify_env["SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "kfaas-notify-email",
        "key": "SMTP_PASSWORD",
    }
    for name, ksvc in ksvcs.items():
        spec = ksvc["spec"]["template"]["spec"]
        security = spec["containers"][0]["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        assert security["seccompProfile"]["type"] == "RuntimeDefault", name
        assert {"name": "tmp", "mountPath": "/tmp"} in spec["containers"][0]["volumeMounts"], name
        public = ksvc["metadata"]["labels"].get("networking.knative.dev/visibility") != "cluster-local"
        assert public == (name == "gateway"), name


def test_eventing_objects(fixture_tree: Path) -> None:
    docs = build(fixture_tree, "kind")
    triggers = by_kind(docs, "Trigger")
    assert set(triggers) == {"process-order-orders", "notify-email-order-processed", "daily-report-report"}
    notify = triggers["notify-email-order-processed"]
    assert notify["spec"]["filter"] == {"attributes": {"type": "com.kfaas.order.processed"}}
    assert notify["spec"]["delivery"] == {
        "retry": 3,
        "backoffPolicy": "linear",
        "backoffDelay": "PT0.5S",
        "deadLetterSink": {
            "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "kfaas-dead-letters"},
            "uri": "/notify-email-order-processed",
        },
    }
    assert notify["metadata"]["annotations"]["rabbitmq.eventing.knative.dev/parallelism"] == "4"
    for name, trigger in triggers.items():
        assert set(trigger["spec"].get("filter", {})) <= {"attributes"}
        assert trigger["spec"]["delivery"]["deadLetterSink"]["uri"] == f"/{name}"  # kfaas dead-letters' path
    broker = by_kind(docs, "Broker")["default"]
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "MTChannelBasedBroker"
    assert broker["spec"]["delivery"]["deadLetterSink"]["uri"] == "/broker-default"
    source = by_kind(docs, "RabbitmqSource")["process-order-orders-queue"]
    assert source["spec"]["sink"]["ref"]["kind"] == "Broker"
    assert source["spec"]["rabbitmqResourcesConfig"]["queueName"] == "orders"
    assert source["spec"]["delivery"]["retry"] == 5
    queue = next(iter(by_kind(docs, "Queue").values()))
    assert queue["spec"]["type"] == "quorum"
    assert queue["spec"]["durable"] is True
    ping = by_kind(docs, "PingSource")["daily-report-nightly"]
    assert ping["spec"]["schedule"] == "0 1 * * *"
    assert ping["spec"]["timezone"] == "Europe/Paris"
    assert yaml.safe_load(ping["spec"]["data"]) == {"report": "daily"}
    assert list(by_kind(docs, "SinkBinding")) == ["notify-email-sink"]  # only publishes: true


def test_production_overlay_uses_the_rabbitmq_broker(fixture_tree: Path) -> None:
    docs = build(fixture_tree, "production")
    broker = by_kind(docs, "Broker")["default"]
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "RabbitMQBroker"
    assert broker["spec"]["config"]["kind"] == "RabbitmqBrokerConfig"
    assert "kfaas-rabbitmq" in by_kind(docs, "RabbitmqBrokerConfig")
    assert "rabbitmq" in by_kind(docs, "RabbitmqCluster")
    assert "rabbitmq" not in by_kind(docs, "StatefulSet")
    assert not by_kind(docs, "Secret"), "production must not ship generated credentials"
    for source in by_kind(docs, "RabbitmqSource").values():
        assert source["spec"]["rabbitmqClusterReference"] == {"name": "rabbitmq", "namespace": "kfaas"}
    images = [
        c["image"]
        for d in by_kind(docs, "Service").values()
        if "template" in d.get("spec", {})
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    assert "kfaas/get-user:0.1.0" in images


def test_one_mongodb_user_per_function(fixture_tree: Path) -> None:
    docs = build(fixture_tree, "kind")
    spec = by_kind(docs, "Job")["kfaas-mongodb-users"]["spec"]["template"]["spec"]
    app = load_app(FIXTURE_FUNCTIONS)
    users = [fn.name for fn in app.functions if "mongodb" in fn.uses]
    (secrets,) = [v["projected"]["sources"] for v in spec["volumes"] if v["name"] == "secrets"]
    files = {
        item["path"]: (s["secret"]["name"], item["key"]) for s in secrets for item in s["secret"]["items"]
    }
    for name in users:
        assert files[f"KFAAS_PASSWORD_{name.upper().replace('-', '_')}"] == (
            f"kfaas-{name}-mongodb",
            "password",
        )
    assert files["KFAAS_ROOT_USERNAME"] == ("kfaas-mongodb", "username")
    assert files["KFAAS_ROOT_PASSWORD"] == ("kfaas-mongodb", "password")
    secret_objects = by_kind(docs, "Secret")
    assert {f"kfaas-{n}-mongodb" for n in users} <= set(secret_objects)
    assert "place-order" not in users
    assert "kfaas-place-order-mongodb" not in secret_objects
    script = by_kind(docs, "ConfigMap")["kfaas-mongodb-users"]["data"]["mongodb-users.js"]
    assert '"user": "get-user"' in script
    assert '"access": "read"' in script


def test_the_mongodb_root_password_is_never_on_a_command_line(fixture_tree: Path) -> None:
    """The users Job reads every secret from files of the mounted Secrets: not in its command (which the
    process list shows to every user of the node), not in its environment."""
    for overlay in ("kind", "production"):
        docs = build(fixture_tree, overlay)
        (job,) = [p for p in netpol.pods(docs) if p.name == "kfaas-mongodb-users"]
        (container,) = job.spec["containers"]
        assert container["command"][:4] == ["mongosh", "--quiet", "--nodb", "--file"]
        assert not container.get("args")
        assert all("valueFrom" not in e for e in container["env"]), container["env"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["KFAAS_SECRETS_DIR"] == "/kfaas/secrets"
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/kfaas/secrets"]["readOnly"] is True
        for pod in netpol.pods(docs):
            for c in pod.spec["containers"]:
                secret_env = {e["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
                words = " ".join(c.get("command", []) + c.get("args", []))
                leaked = {name for name in secret_env if f"$({name})" in words or f"${name}" in words}
                assert not leaked, f"{pod.name}: {leaked} on the command line"


def test_mongodb_users_script_parses(tmp_path: Path) -> None:
    node = toolfinder.which("node")
    if node is None:
        missing("node (to syntax-check the mongosh script)")
    from kfaas.render import mongodb_users_script

    script = tmp_path / "users.js"
    script.write_text(mongodb_users_script(load_app(FIXTURE_FUNCTIONS)))
    result = subprocess.run([str(node), "--check", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    script.write_text("const x = {;\n")
    assert (
        subprocess.run([str(node), "--check", str(script)], capture_output=True, check=False).returncode != 0
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("tree", ["fixtures", "committed"])
def test_every_pod_is_restricted_tokenless_and_sized(overlay: str, tree: str, fixture_tree: Path) -> None:
    """The project's own restricted-profile check, for the Knative Services too (checkov and kube-linter
    do not parse them): Pod Security "restricted", no service account token, requests and a memory limit."""
    docs = build(fixture_tree if tree == "fixtures" else ROOT, overlay)
    found = netpol.pods(docs)
    assert {p.kind for p in found} >= {"Service", "StatefulSet", "Job"}
    for pod in found:
        where = f"{pod.kind} {pod.name}"
        assert pod.spec.get("automountServiceAccountToken") is False, where
        security = pod.spec.get("securityContext", {})
        for c in pod.spec["containers"]:
            sc = c["securityContext"]
            assert sc.get("runAsNonRoot", security.get("runAsNonRoot")) is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert (
                sc.get("seccompProfile", security.get("seccompProfile", {})).get("type") == "RuntimeDefault"
            ), where
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
            assert "memory" in c["resources"]["limits"], where
        netpol.check_uid_and_probes(pod, netpol.IMAGE_USERS.get(pod.name))


def _pod(docs: list[dict[str, Any]], name: str) -> netpol.Pod:
    (pod,) = [p for p in netpol.pods(docs) if p.name == name]
    return pod


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_follow_who_calls_whom(overlay: str, fixture_tree: Path) -> None:
    docs = build(fixture_tree, overlay)
    app = load_app(FIXTURE_FUNCTIONS)
    deny = [p for p in netpol.policies(docs) if p["spec"]["podSelector"] == {}]
    assert [p["metadata"]["name"] for p in deny] == ["default-deny-ingress"]
    assert "ingress" not in deny[0]["spec"]
    stranger = netpol.Peer({"app": "anything-else"})
    kourier, activator = netpol.Peer(namespace="kourier-system"), netpol.Peer(namespace="knative-serving")
    functions = {fn.name: _pod(docs, fn.name) for fn in app.functions}
    # Knative's data path reaches every Knative Service; nothing else does, not even on the container's port
    for name in [*functions, "gateway", "kfaas-dead-letters"]:
        pod = _pod(docs, name)
        assert netpol.allowed(docs, pod, kourier, 8012), name
        assert netpol.allowed(docs, pod, activator, 8012), name
        assert netpol.allowed(docs, pod, activator, 9090), name  # the autoscaler
        assert not netpol.allowed(docs, pod, kourier, 9090), name
        for peer in (stranger, netpol.Peer(_pod(docs, "gateway").labels), netpol.Peer(namespace="default")):
            assert not netpol.allowed(docs, pod, peer, 8012), name
            assert not netpol.allowed(docs, pod, peer, 8080), name
    # backing services: exactly the functions whose description uses them
    backing = {"mongodb": ("mongodb", 27017), "rabbitmq": ("rabbitmq", 5672)}
    if overlay != "production":
        backing["smtp"] = ("mailpit", 1025)
    for use, (service, port) in backing.items():
        if overlay == "production" and service == "rabbitmq":
            continue  # the RabbitmqCluster's pods are the operator's: no pod spec here to evaluate
        target = _pod(docs, service)
        for fn in app.functions:
            expected = use in fn.uses
            assert netpol.allowed(docs, target, netpol.Peer(functions[fn.name].labels), port) is expected, (
                use,
                fn.name,
            )
        assert not netpol.allowed(docs, target, netpol.Peer(_pod(docs, "gateway").labels), port), use
        assert not netpol.allowed(docs, target, stranger, port), use
    assert netpol.allowed(
        docs, _pod(docs, "mongodb"), netpol.Peer(_pod(docs, "kfaas-mongodb-users").labels), 27017
    )
    if overlay != "production":
        rabbitmq = _pod(docs, "rabbitmq")
        adapter = netpol.Peer(
            {
                "eventing.knative.dev/source": "rabbitmq-source-controller",
                "eventing.knative.dev/SourceName": "x",
            }
        )
        assert netpol.allowed(docs, rabbitmq, adapter, 5672)  # the fixtures have a queue source
        assert netpol.allowed(docs, rabbitmq, netpol.Peer(namespace="rabbitmq-system"), 15672)
        assert not netpol.allowed(docs, _pod(docs, "mailpit"), stranger, 8025)  # the UI: port-forward only


def test_the_rabbitmq_broker_ingress_takes_events_from_who_sends_them(fixture_tree: Path) -> None:
    docs = build(fixture_tree, "production")
    app = load_app(FIXTURE_FUNCTIONS)
    ingress = netpol.Pod(
        "Deployment",
        "default-broker-ingress",
        {"eventing.knative.dev/broker": "default", "eventing.knative.dev/brokerRole": "ingress"},
        {},
    )
    for fn in app.functions:
        peer = netpol.Peer(_pod(docs, fn.name).labels)
        assert netpol.allowed(docs, ingress, peer, 8080) is fn.publishes, fn.name
    adapter = netpol.Peer({"eventing.knative.dev/source": "rabbitmq-source-controller"})
    dispatcher = netpol.Peer(
        {"eventing.knative.dev/broker": "default", "eventing.knative.dev/brokerRole": "dispatcher"}
    )
    for peer in (adapter, dispatcher, netpol.Peer(namespace="knative-eventing")):
        assert netpol.allowed(docs, ingress, peer, 8080), peer
    assert not netpol.allowed(docs, ingress, netpol.Peer({"app": "x"}), 8080)


def test_the_network_policies_name_who_calls_whom(fixture_tree: Path) -> None:
    text = (fixture_tree / "k8s" / "base" / "900-network-policies.yaml").read_text()
    assert "#   gateway -> create-user, get-user, place-order (their routes)" in text
    assert (
        "#   sources -> broker default: daily-report-nightly (ping), process-order-orders-queue (queue)"
        in text
    )
    assert "#   functions that publish -> their broker: notify-email" in text
    assert "#   -> rabbitmq: place-order, kfaas-dead-letters" in text


def test_a_bucket_source_runs_as_a_deployment_with_its_sink_binding() -> None:
    docs = build(ROOT, "kind")  # the committed tree: resize-image has a bucket source
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "resize-image-uploads"
    )
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 1
    assert container["args"] == [
        "bucket-source",
        "--functions",
        "/app/functions",
        "--source",
        "resize-image/uploads",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["AMQP_URL_FILE"]["value"].startswith("/var/run/secrets/")  # the URL as a file, not in the env
    assert "AMQP_URL" not in env
    assert {"readinessProbe", "livenessProbe"} <= set(container)
    assert deployment["spec"]["template"]["metadata"]["labels"]["kfaas.dev/rabbitmq"] == "client"
    binding = by_kind(docs, "SinkBinding")["resize-image-uploads-sink"]
    assert binding["spec"]["subject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "resize-image-uploads",
    }
    assert binding["spec"]["sink"]["ref"]["kind"] == "Broker"
    ksvc = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "resize-image")
    fn_env = {e["name"]: e for e in ksvc["spec"]["template"]["spec"]["containers"][0]["env"]}
    for key in ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        assert fn_env[key]["valueFrom"]["secretKeyRef"] == {"name": "kfaas-s3", "key": key}
    assert "kfaas-s3" in {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}  # local-dev's
