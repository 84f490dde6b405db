"""The generated parts of ``k8s/`` (kustomize) from the function descriptions.

Rendered here (everything that depends on the functions):

- ``k8s/base/310-mongodb-users.yaml``: the mongosh script and the Job creating one role and one user per
  function (the seed's IAM policies);
- ``k8s/base/500-broker.yaml``: one Broker per broker name used, with a delivery spec;
- ``k8s/base/550-platform.yaml``: the API gateway and the dead-letter sink ``kfaas dead-letters`` (Knative
  Services);
- ``k8s/base/600-functions.yaml``: one Knative Service per function;
- ``k8s/base/700-triggers.yaml``: one Trigger per trigger;
- ``k8s/base/800-sources.yaml``: RabbitmqSource (+ its quorum Queue), PingSource, SinkBinding, and per
  bucket source a Deployment of ``kfaas bucket-source`` with the SinkBinding giving it the broker's URL,
  and per stream source a Deployment of one replica (``kfaas stream run``) with its Service: Knative has no
  RabbitMQ stream source, and the order of a stream needs a single consumer (docs/streams.md);
- ``k8s/base/900-network-policies.yaml``: default-deny ingress in the namespace, and an allow for each
  path the descriptions imply (Knative's data path into the Knative Services, the functions that use
  MongoDB and RabbitMQ);
- ``k8s/components/local-dev/``: dev-only Secrets and Mailpit (with its network policy) for kind and
  minikube.

The namespace, MongoDB, RabbitMQ, the component switching to the RabbitMQ broker and the overlays are
written by hand (they do not change when a function is added).
"""

from __future__ import annotations

import json
from typing import Any

from kfaas.render import (
    MONGODB_DATABASE,
    NAMESPACE,
    PLATFORM_IMAGE,
    dump_yaml,
    header,
    image,
    lambda_runtime_env,
    mongodb_functions,
    mongodb_users_script,
    password_env,
)
from kfaas.spec import (
    AppSpec,
    BucketSource,
    Delivery,
    FunctionSpec,
    PingSource,
    QueueSource,
    StreamSource,
    Trigger,
)

__all__ = ["render_k8s"]

BASE = "k8s/base"
LOCAL_DEV = "k8s/components/local-dev"
MONGO_IMAGE = "mongo:7.0.14"
MAILPIT_IMAGE = "axllent/mailpit:v1.21.8"
# The dead-letter sink (`kfaas dead-letters`) keeps every dead letter in RabbitMQ, in the queue the dev broker
# uses for the same trigger (t.default.<function>-<trigger>.dlq), so `kfaas dlq` lists and redrives them.
DEAD_LETTERS = "kfaas-dead-letters"
GATEWAY = "gateway"
CONFIG = "kfaas-config"
RABBITMQ_SECRET = "kfaas-rabbitmq"  # noqa: S105 (the name of a Secret)
# The object store's endpoint and credentials (S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_REGION) for the functions that use S3: the store is an existing one (docs/object-storage.md)
S3_SECRET = "kfaas-s3"  # noqa: S105 (the name of a Secret)
S3_KEYS = ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
MONGODB_ROOT_SECRET = "kfaas-mongodb"  # noqa: S105 (the name of a Secret)
AWS_ENDPOINTS = "kfaas-aws"  # kfaas aws-endpoints: EventBridge, SQS and SES for the lambda handlers' SDKs
AWS_SECRET = "kfaas-aws"  # noqa: S105 (the name of a Secret: the access key the SDKs sign with)
AWS_SDK_SERVICES = ("EVENTBRIDGE", "SQS", "SES", "SESV2")
FUNCTION_URL_TEMPLATE = "http://{name}." + NAMESPACE + ".svc.cluster.local"
USERS_UID = 10999  # the users Job: mongosh needs no particular user, so one that no image or host has

# Where Knative's own components run (the namespaces of the pinned releases, docs/kubernetes.md): every
# request to a Knative Service comes from the ingress (Kourier's gateway pods) or from the activator,
# and the autoscaler scrapes each pod's queue-proxy.
KNATIVE_SERVING_NAMESPACE = "knative-serving"
INGRESS_NAMESPACE = "kourier-system"
EVENTING_NAMESPACE = "knative-eventing"
RABBITMQ_OPERATOR_NAMESPACE = "rabbitmq-system"
# queue-proxy, the sidecar Knative puts in front of the container: HTTP/1, h2c, TLS (system-internal-tls)
QUEUE_PROXY_PORTS = [8012, 8013, 8112]
AUTOSCALER_METRICS_PORT = 9090  # queue-proxy's metrics, scraped by the autoscaler
# RabbitmqSource adapters (eventing-rabbitmq labels their pods so; docs/kubernetes.md)
SOURCE_ADAPTER = {"eventing.knative.dev/source": "rabbitmq-source-controller"}

_KSVC = {"apiVersion": "serving.knative.dev/v1", "kind": "Service"}


def _labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "kfaas",
    }


def _meta(name: str, component: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": _labels(name, component), **extra}


def _ref(name: str) -> dict[str, str]:
    return {**_KSVC, "name": name}


def _broker_ref(name: str) -> dict[str, Any]:
    return {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": name}}


def _dead_letter_sink(path: str) -> dict[str, Any]:
    """The sink plus a path naming whose dead letter it is (Knative appends ``uri`` to the ref's URL)."""
    return {"ref": _ref(DEAD_LETTERS), "uri": f"/{path}"}


def _delivery(delivery: Delivery, sink_path: str) -> dict[str, Any]:
    # No `timeout`: the Trigger/Broker CRDs validated here have no delivery.timeout (Knative keeps it behind
    # the delivery-timeout feature flag). On Knative the per-attempt limit is the subscriber's timeoutSeconds.
    spec: dict[str, Any] = {
        "retry": delivery.retry,
        "backoffPolicy": delivery.backoff_policy,
        "backoffDelay": delivery.backoff_delay,
    }
    if delivery.dead_letter:
        spec["deadLetterSink"] = _dead_letter_sink(sink_path)
    return spec


def _secure_container(uid: int = 10001) -> dict[str, Any]:
    """Pod Security "restricted" at container level (Knative allows these fields without feature flags)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _config_env(name: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"configMapKeyRef": {"name": CONFIG, "key": name}}}


def _value_env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _mongodb_secret(fn: FunctionSpec) -> str:
    return f"kfaas-{fn.name}-mongodb"


def _function_env(fn: FunctionSpec) -> list[dict[str, Any]]:
    if fn.kind == "lambda":
        # kfaas serve reads the handler, its runtime and the event sources from the description
        env = [_value_env("KFAAS_FUNCTION", fn.name), _value_env("FUNCTION_SIGNATURE_TYPE", "lambda")]
        if fn.lambda_image:
            env.append(_value_env("KFAAS_DESCRIPTION", f"/app/functions/{fn.name}/function.yaml"))
            return env  # the services are the Lambda image's to use: its container gets them
        env.append(_value_env("KFAAS_DESCRIPTION", "/app/function/function.yaml"))
        env += _aws_sdk_env(fn)
        env += _service_env(fn)
        return env
    env = [
        _value_env("KFAAS_FUNCTION", fn.name),
        _value_env("FUNCTION_TARGET", fn.target),
        _value_env("FUNCTION_SOURCE", f"/app/function/{fn.source}"),
    ]
    if fn.kind == "cloudevent":
        env.append(_value_env("FUNCTION_SIGNATURE_TYPE", "cloudevent"))
    # the same bound as timeoutSeconds: the runtime ends an invocation there (ctx.once leases too)
    env.append(_value_env("KFAAS_TIMEOUT", str(fn.timeout)))
    env += _service_env(fn)
    return env


def _aws_sdk_env(fn: FunctionSpec) -> list[dict[str, Any]]:
    """A lambda handler's AWS SDK: kfaas's endpoints (AWS_ENDPOINT_URL_*), their access key, the region."""
    url = f"http://{AWS_ENDPOINTS}.{NAMESPACE}.svc.cluster.local"
    env = [
        _value_env(f"AWS_ENDPOINT_URL_{s}", url)
        for s in AWS_SDK_SERVICES
        if f"AWS_ENDPOINT_URL_{s}" not in fn.env
    ]
    env += [
        _secret_env("AWS_ACCESS_KEY_ID", AWS_SECRET, "KFAAS_AWS_ACCESS_KEY_ID"),
        _secret_env("AWS_SECRET_ACCESS_KEY", AWS_SECRET, "KFAAS_AWS_SECRET_ACCESS_KEY"),
    ]
    if not fn.lambda_image:  # an image's runtime container has them from lambda_runtime_env
        env += [
            _value_env("AWS_REGION", fn.lambda_.region),
            _value_env("AWS_DEFAULT_REGION", fn.lambda_.region),
        ]
    return env


def _aws_endpoints(app: AppSpec) -> list[dict[str, Any]]:
    """``kfaas aws-endpoints`` when a function is kind lambda: a Knative Service kept warm, K_SINK bound."""
    if not any(fn.kind == "lambda" for fn in app.functions):
        return []
    service = _knative_service(
        AWS_ENDPOINTS,
        "aws",
        image_ref=image(PLATFORM_IMAGE),
        args=["aws-endpoints"],
        env=[
            # K_SINK (the default bus: the broker's ingress) is set by its SinkBinding
            _secret_env("AMQP_URL", RABBITMQ_SECRET, "AMQP_URL"),
            _config_env("SMTP_HOST"),
            _config_env("SMTP_PORT"),
            _secret_env("KFAAS_AWS_ACCESS_KEY_ID", AWS_SECRET, "KFAAS_AWS_ACCESS_KEY_ID"),
            _secret_env("KFAAS_AWS_SECRET_ACCESS_KEY", AWS_SECRET, "KFAAS_AWS_SECRET_ACCESS_KEY"),
        ],
        uses=["rabbitmq", "smtp"],
        publishes=True,
        # Kept warm: a handler's PutEvents or SendMessage waits on it, a cold start would add to each call.
        annotations={"autoscaling.knative.dev/min-scale": "1", "autoscaling.knative.dev/max-scale": "3"},
        timeout=30,
        memory="192Mi",
        cpu="100m",
    )
    binding = {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "SinkBinding",
        "metadata": _meta(f"{AWS_ENDPOINTS}-sink", "sink-binding"),
        "spec": {"subject": _ref(AWS_ENDPOINTS), "sink": _broker_ref("default")},
    }
    return [service, binding]


def _service_env(fn: FunctionSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    # PORT is set by Knative (a reserved variable); K_SINK by the SinkBinding.
    if "mongodb" in fn.uses:
        env.append(_secret_env("MONGODB_URL", _mongodb_secret(fn), "MONGODB_URL"))
        env.append(_config_env("MONGODB_DATABASE"))
    if "rabbitmq" in fn.uses:
        env.append(_secret_env("AMQP_URL", RABBITMQ_SECRET, "AMQP_URL"))
    if "smtp" in fn.uses:
        env += [_config_env("SMTP_HOST"), _config_env("SMTP_PORT"), _config_env("MAIL_FROM")]
    if "s3" in fn.uses:
        env += [_secret_env(key, S3_SECRET, key) for key in S3_KEYS]
    env += [_value_env(k, v) for k, v in fn.env.items()]
    env += [_secret_env(key, f"kfaas-{fn.name}", key) for key in fn.secrets]
    return env


def _client_labels(uses: list[str], publishes: bool = False) -> dict[str, str]:
    """Labels the network policies of MongoDB, RabbitMQ, the SMTP server and the broker let in."""
    labels = {}
    if "mongodb" in uses:
        labels["kfaas.dev/mongodb"] = "client"
    if "rabbitmq" in uses:
        labels["kfaas.dev/rabbitmq"] = "client"
    if "smtp" in uses:
        labels["kfaas.dev/smtp"] = "client"
    if publishes:
        labels["kfaas.dev/broker"] = "client"
    return labels


def _knative_service(
    name: str,
    component: str,
    *,
    image_ref: str,
    env: list[dict[str, Any]],
    uses: list[str],
    annotations: dict[str, str],
    timeout: int,
    memory: str,
    cpu: str,
    args: list[str] | None = None,
    public: bool = False,
    probes: bool = True,
    uid: int = 10001,
    publishes: bool = False,
) -> dict[str, Any]:
    labels = _labels(name, component)
    if not public:
        # Reachable only inside the cluster (http://<name>.kfaas.svc.cluster.local): the gateway is the one
        # public URL of the API, the broker and the sources deliver events from inside.
        labels["networking.knative.dev/visibility"] = "cluster-local"
    container: dict[str, Any] = {"name": component, "image": image_ref}
    if args:
        container["args"] = args
    container["ports"] = [{"name": "http1", "containerPort": 8080}]
    if env:
        container["env"] = env
    container["resources"] = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}
    if probes:
        # Knative probes the container's own port when `port` is left out.
        container["readinessProbe"] = {"httpGet": {"path": "/health/readiness"}, "periodSeconds": 5}
        container["livenessProbe"] = {"httpGet": {"path": "/health/liveness"}, "periodSeconds": 10}
    container["securityContext"] = _secure_container(uid)
    container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    return {
        **_KSVC,
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "template": {
                "metadata": {
                    "labels": {**_labels(name, component), **_client_labels(uses, publishes)},
                    "annotations": annotations,
                },
                "spec": {
                    "timeoutSeconds": timeout,
                    # nothing here calls the Kubernetes API, and service links only add variables
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
                },
            }
        },
    }


def _autoscaling(fn: FunctionSpec) -> dict[str, str]:
    annotations = {
        # min-scale is the seed's provisioned concurrency; 0 lets the function scale to zero.
        "autoscaling.knative.dev/min-scale": str(fn.scaling.min),
        "autoscaling.knative.dev/max-scale": str(fn.scaling.max),  # 0 = no limit
        "autoscaling.knative.dev/target": str(fn.scaling.target),  # concurrent requests per instance
    }
    if fn.scaling.retention:
        annotations["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] = fn.scaling.retention
    return annotations


def _function(fn: FunctionSpec) -> dict[str, Any]:
    lambda_image = fn.lambda_image
    ksvc = _knative_service(
        fn.name,
        "function",
        # a Lambda image: kfaas's own container is the platform image (it holds every description)
        image_ref=image(PLATFORM_IMAGE if lambda_image else fn.name),
        env=_function_env(fn),
        uses=list(fn.uses),
        annotations=_autoscaling(fn),
        timeout=fn.timeout,
        memory=KFAAS_SIDECAR_MEMORY if lambda_image else fn.memory,
        cpu=KFAAS_SIDECAR_CPU if lambda_image else fn.cpu,
        args=["serve"] if lambda_image else None,
        publishes=fn.publishes,
    )
    spec = ksvc["spec"]["template"]["spec"]
    if fn.container_concurrency is not None:
        # a runtime client takes one invocation at a time: at most this many requests reach an instance
        spec["containerConcurrency"] = fn.container_concurrency
    if lambda_image:
        spec["containers"][0]["name"] = "kfaas"
        spec["containers"].append(_lambda_image_container(fn))
    return ksvc


KFAAS_SIDECAR_MEMORY = "128Mi"  # kfaas serve beside a Lambda image: the Runtime API, no handler
KFAAS_SIDECAR_CPU = "100m"


def _lambda_image_container(fn: FunctionSpec) -> dict[str, Any]:
    """The Lambda container image, unchanged: no port (kfaas's container serves it), the pod's limits."""
    assert fn.image is not None
    container: dict[str, Any] = {"name": "function", "image": fn.image}
    if fn.handler:
        container["args"] = [fn.handler]  # SAM's ImageConfig.Command: the handler the image's CMD names
    env = [_value_env(k, v) for k, v in lambda_runtime_env(fn).items()] + _aws_sdk_env(fn) + _service_env(fn)
    container["env"] = env
    container["resources"] = {
        "requests": {"cpu": fn.cpu, "memory": fn.memory},
        "limits": {"memory": fn.memory},
    }
    # Lambda runs a function as a user of its own on a read-only filesystem with a writable /tmp: so here
    container["securityContext"] = _secure_container()
    container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    return container


def _platform(app: AppSpec) -> list[dict[str, Any]]:
    gateway = _knative_service(
        GATEWAY,
        "gateway",
        image_ref=image(PLATFORM_IMAGE),
        args=["gateway", "--functions", "/app/functions"],
        env=[
            _value_env("KFAAS_FUNCTION_URL_TEMPLATE", FUNCTION_URL_TEMPLATE),
            _value_env("KFAAS_CORS_ORIGINS", "*"),
        ],
        uses=[],
        # Kept warm: every API call goes through it, a cold gateway would add to each function's cold start.
        annotations={"autoscaling.knative.dev/min-scale": "1", "autoscaling.knative.dev/max-scale": "5"},
        timeout=max([fn.timeout for fn in app.functions if fn.serves_http] or [30]),
        memory="128Mi",
        cpu="100m",
        public=True,
    )
    dead_letters = _knative_service(
        DEAD_LETTERS,
        "sink",
        image_ref=image(PLATFORM_IMAGE),
        args=["dead-letters", "--functions", "/app/functions"],
        env=[_secret_env("AMQP_URL", RABBITMQ_SECRET, "AMQP_URL")],
        uses=["rabbitmq"],
        annotations={"autoscaling.knative.dev/min-scale": "0", "autoscaling.knative.dev/max-scale": "2"},
        timeout=30,
        memory="128Mi",
        cpu="50m",
    )
    return [gateway, dead_letters, *_aws_endpoints(app), *_engine(app)]


def _engine(app: AppSpec) -> list[dict[str, Any]]:
    """The state machine engine: a Deployment (stateless replicas sharing MongoDB) and its Service.

    Not a Knative Service: its timers must fire with no request coming in, so it never scales to zero.
    """
    if app.engine is None:
        return []
    name = app.engine.name
    labels = {**_labels(name, "saga"), "kfaas.dev/mongodb": "client"}
    container = {
        "name": "saga",
        "image": image(PLATFORM_IMAGE),
        "args": ["saga", "--functions", "/app/functions"],
        "ports": [{"name": "http", "containerPort": 8080}],
        # K_SINK (the broker ingress) is set by the engine's SinkBinding
        "env": [
            # the URL holds the engine's password: read from the mounted Secret, not an environment variable
            _value_env("MONGODB_URL_FILE", "/var/run/secrets/kfaas/mongodb/MONGODB_URL"),
            _config_env("MONGODB_DATABASE"),
            {"name": "KFAAS_SAGA_URL", "value": f"http://{name}.{NAMESPACE}.svc.cluster.local"},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/health/readiness", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/health/liveness", "port": "http"}, "periodSeconds": 10},
        "securityContext": _secure_container(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "mongodb", "mountPath": "/var/run/secrets/kfaas/mongodb", "readOnly": True},
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, "saga"),
        "spec": {
            # two replicas share the executions; either may be killed at any point (docs/state-machines.md)
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": _restricted_pod(10001),
                    "containers": [container],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                        _secret_volume("mongodb", _mongodb_secret(app.engine), "MONGODB_URL"),
                    ],
                },
            },
        },
    }
    service = _http_service(name, "saga")
    return [deployment, service]


def _brokers(app: AppSpec) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {
                **_meta(name, "broker"),
                # MT channel broker for a quickstart cluster; components/rabbitmq-broker switches the class.
                "annotations": {"eventing.knative.dev/broker.class": "MTChannelBasedBroker"},
            },
            # The default for triggers without their own delivery (every kfaas trigger has one).
            "spec": {"delivery": _delivery(Delivery(), f"broker-{name}")},
        }
        for name in app.brokers
    ]


def _trigger(fn: FunctionSpec, trigger: Trigger, subscriber: dict[str, Any] | None = None) -> dict[str, Any]:
    name = f"{fn.name}-{trigger.name}"
    spec: dict[str, Any] = {"broker": trigger.broker}
    if trigger.filter:
        spec["filter"] = {"attributes": dict(trigger.filter)}
    spec["subscriber"] = {"ref": subscriber or _ref(fn.name)}
    spec["delivery"] = _delivery(trigger.delivery, name)
    meta = _meta(name, "trigger")
    # Read by the RabbitMQ broker (events in flight per trigger; 1 keeps FIFO); the MT broker ignores it.
    meta["annotations"] = {"rabbitmq.eventing.knative.dev/parallelism": str(trigger.parallelism)}
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": meta, "spec": spec}


def _rabbitmq_reference() -> dict[str, Any]:
    # The StatefulSet RabbitMQ of the base is reached through a connection Secret; the rabbitmq-broker
    # component points this at the RabbitmqCluster instead.
    return {"connectionSecret": {"name": RABBITMQ_SECRET}}


def _queue_source(fn: FunctionSpec, source: QueueSource) -> list[dict[str, Any]]:
    name = f"{fn.name}-{source.name}"
    queue = {
        "apiVersion": "rabbitmq.com/v1beta1",
        "kind": "Queue",
        "metadata": _meta(f"{name}-queue", "queue"),
        # The queue the producers publish to (the SQS stand-in), declared durable and quorum.
        "spec": {
            "name": source.queue,
            "type": "quorum",
            "durable": True,
            "autoDelete": False,
            "rabbitmqClusterReference": _rabbitmq_reference(),
        },
    }
    rabbitmq_source = {
        "apiVersion": "sources.knative.dev/v1alpha1",
        "kind": "RabbitmqSource",
        "metadata": _meta(name, "source"),
        "spec": {
            "rabbitmqClusterReference": _rabbitmq_reference(),
            "rabbitmqResourcesConfig": {
                "queueName": source.queue,
                "predeclared": True,
                "parallelism": source.parallelism,
            },
            "delivery": {
                "retry": source.delivery.retry,
                "backoffPolicy": source.delivery.backoff_policy,
                "backoffDelay": source.delivery.backoff_delay,
            },
            "sink": _broker_ref(source.broker),
        },
    }
    return [queue, rabbitmq_source]


def _ping_source(fn: FunctionSpec, source: PingSource) -> dict[str, Any]:
    spec: dict[str, Any] = {"schedule": source.schedule, "timezone": source.timezone}
    if source.data is not None:
        spec["contentType"] = source.content_type
        spec["data"] = source.data if isinstance(source.data, str) else json.dumps(source.data)
    spec["sink"] = _broker_ref(source.broker)
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": _meta(f"{fn.name}-{source.name}", "source"),
        "spec": spec,
    }


def _bucket_source(fn: FunctionSpec, source: BucketSource) -> list[dict[str, Any]]:
    """``kfaas bucket-source`` as a Deployment (one replica; Knative has no source for S3 event records) and
    the SinkBinding that sets its K_SINK to the broker."""
    name = f"{fn.name}-{source.name}"
    container = {
        "name": "bucket-source",
        "image": image(PLATFORM_IMAGE),
        "args": ["bucket-source", "--functions", "/app/functions", "--source", f"{fn.name}/{source.name}"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [
            # the URL holds the password: read from the mounted Secret, not an environment variable
            _value_env("AMQP_URL_FILE", "/var/run/secrets/kfaas/rabbitmq/AMQP_URL"),
            # its queue is s.<namespace>.<function>-<source>, as the dev broker names it
            _value_env("KFAAS_NAMESPACE", NAMESPACE),
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "192Mi"}},
        "readinessProbe": {"httpGet": {"path": "/health/readiness", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/health/liveness", "port": "http"}, "periodSeconds": 10},
        "securityContext": _secure_container(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "rabbitmq", "mountPath": "/var/run/secrets/kfaas/rabbitmq", "readOnly": True},
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, "source"),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": {**_labels(name, "source"), **_client_labels(["rabbitmq"], True)}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": _restricted_pod(10001),
                    "containers": [container],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                        _secret_volume("rabbitmq", RABBITMQ_SECRET, "AMQP_URL"),
                    ],
                },
            },
        },
    }
    binding = {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "SinkBinding",
        "metadata": _meta(f"{name}-sink", "sink-binding"),
        "spec": {
            "subject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "sink": _broker_ref(source.broker),
        },
    }
    return [deployment, binding]


def _sink_binding(fn: FunctionSpec) -> dict[str, Any]:
    broker = (fn.triggers[0].broker if fn.triggers else None) or "default"
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "SinkBinding",
        "metadata": _meta(f"{fn.name}-sink", "sink-binding"),
        # Sets K_SINK (the broker ingress URL) in the function's pods: ctx.publish sends there.
        "spec": {"subject": _ref(fn.name), "sink": _broker_ref(broker)},
    }


def _stream_source(consumer: FunctionSpec, fn: FunctionSpec, source: StreamSource) -> list[dict[str, Any]]:
    """The consumer of a stream source: a Deployment of exactly one replica (Recreate: never two at once,
    the second would be refused by the first's claim) and the Service its feeds' Triggers deliver to."""
    name = consumer.name
    labels = {**_labels(name, "stream-source"), **_client_labels(list(consumer.uses))}
    container = {
        "name": "stream",
        "image": image(PLATFORM_IMAGE),
        "args": ["stream", "--functions", "/app/functions", "run", name],
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [
            # both URLs hold passwords: read from the mounted Secrets, not environment variables
            _value_env("AMQP_URL_FILE", "/var/run/secrets/kfaas/rabbitmq/AMQP_URL"),
            _value_env("MONGODB_URL_FILE", "/var/run/secrets/kfaas/mongodb/MONGODB_URL"),
            _config_env("MONGODB_DATABASE"),
            _value_env("KFAAS_NAMESPACE", "default"),
            _value_env("KFAAS_FUNCTION_URL_TEMPLATE", FUNCTION_URL_TEMPLATE),
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/health/readiness", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/health/liveness", "port": "http"}, "periodSeconds": 10},
        "securityContext": _secure_container(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "mongodb", "mountPath": "/var/run/secrets/kfaas/mongodb", "readOnly": True},
            {"name": "rabbitmq", "mountPath": "/var/run/secrets/kfaas/rabbitmq", "readOnly": True},
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **_meta(name, "stream-source"),
            "annotations": {"kfaas.dev/stream": source.stream, "kfaas.dev/function": fn.name},
        },
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": fn.timeout + 10,
                    "securityContext": _restricted_pod(10001),
                    "containers": [container],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                        _secret_volume("mongodb", _mongodb_secret(consumer), "MONGODB_URL"),
                        _secret_volume("rabbitmq", RABBITMQ_SECRET, "AMQP_URL"),
                    ],
                },
            },
        },
    }
    service = _http_service(name, "stream-source")
    return [deployment, service]


def _sources(app: AppSpec) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for fn in app.functions:
        for source in fn.sources:
            if isinstance(source, QueueSource):
                docs += _queue_source(fn, source)
            elif isinstance(source, BucketSource):
                docs += _bucket_source(fn, source)
            elif isinstance(source, PingSource):
                docs.append(_ping_source(fn, source))
    for consumer, fn, source in app.streams:
        docs += _stream_source(consumer, fn, source)
    docs += [_sink_binding(fn) for fn in app.functions if fn.publishes]
    if app.engine is not None:
        docs.append(
            {
                "apiVersion": "sources.knative.dev/v1",
                "kind": "SinkBinding",
                "metadata": _meta(f"{app.engine.name}-sink", "sink-binding"),
                # K_SINK of the engine's pods: where it sends task requests
                "spec": {
                    "subject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app.engine.name},
                    "sink": _broker_ref("default"),
                },
            }
        )
    return docs


def _secret_volume(volume: str, secret: str, key: str) -> dict[str, Any]:
    """A volume of one key of a Secret, as a file named after the key (URLs with passwords are read so)."""
    return {"name": volume, "secret": {"secretName": secret, "items": [{"key": key, "path": key}]}}


def _http_service(name: str, component: str) -> dict[str, Any]:
    """The cluster Service in front of a platform Deployment's ``http`` port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, component),
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def _restricted_pod(uid: int) -> dict[str, Any]:
    """Pod-level securityContext of the "restricted" profile (the containers repeat the essentials)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _mongodb_users(app: AppSpec) -> list[dict[str, Any]]:
    users = mongodb_functions(app)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("kfaas-mongodb-users", "database"),
        "data": {"mongodb-users.js": mongodb_users_script(app)},
    }
    # Every secret reaches the script as a file of the mounted Secrets (never in the command line, which
    # the process list shows, nor in the environment); the file names are those the script reads.
    secrets: list[dict[str, Any]] = [
        {
            "secret": {
                "name": MONGODB_ROOT_SECRET,
                "items": [
                    {"key": "username", "path": "KFAAS_ROOT_USERNAME"},
                    {"key": "password", "path": "KFAAS_ROOT_PASSWORD"},
                ],
            }
        },
        *[
            {
                "secret": {
                    "name": _mongodb_secret(fn),
                    "items": [{"key": "password", "path": password_env(fn)}],
                }
            }
            for fn in users
        ],
    ]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta("kfaas-mongodb-users", "database"),
        "spec": {
            "backoffLimit": 20,
            # Removed after 5 minutes, so the next `kubectl apply -k` runs it again (a Job is immutable).
            "ttlSecondsAfterFinished": 300,
            "template": {
                "metadata": {
                    "labels": {**_labels("kfaas-mongodb-users", "database"), "kfaas.dev/mongodb": "client"}
                },
                "spec": {
                    "restartPolicy": "OnFailure",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": _restricted_pod(USERS_UID),
                    "containers": [
                        {
                            "name": "mongosh",
                            "image": MONGO_IMAGE,
                            # --nodb: the script connects itself, with the login it reads from /kfaas/secrets
                            "command": [
                                "mongosh",
                                "--quiet",
                                "--nodb",
                                "--file",
                                "/kfaas/script/mongodb-users.js",
                            ],
                            "env": [
                                _value_env(
                                    "KFAAS_MONGODB_HOST", f"mongodb.{NAMESPACE}.svc.cluster.local:27017"
                                ),
                                _value_env("KFAAS_SECRETS_DIR", "/kfaas/secrets"),
                                _value_env("HOME", "/tmp"),  # mongosh keeps its history and config there
                            ],
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "128Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": _secure_container(USERS_UID),
                            "volumeMounts": [
                                {"name": "script", "mountPath": "/kfaas/script", "readOnly": True},
                                {"name": "secrets", "mountPath": "/kfaas/secrets", "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "script", "configMap": {"name": "kfaas-mongodb-users"}},
                        {"name": "secrets", "projected": {"defaultMode": 0o440, "sources": secrets}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    return [config_map, job]


# --- network policies ---------------------------------------------------------------------------------------


def _peer_namespaces(*names: str) -> dict[str, Any]:
    return {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(names)}
            ]
        }
    }


def _ports(*ports: int) -> list[dict[str, Any]]:
    return [{"port": port, "protocol": "TCP"} for port in ports]


def _policy(name: str, pods: dict[str, Any], ingress: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": pods, "policyTypes": ["Ingress"]}
    if ingress:
        spec["ingress"] = ingress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "kfaas"}},
        "spec": spec,
    }


def knative_services(app: AppSpec) -> list[str]:
    """The names of every Knative Service of the application: the functions, the gateway, the sink."""
    aws = [AWS_ENDPOINTS] if any(fn.kind == "lambda" for fn in app.functions) else []
    return sorted([fn.name for fn in app.functions] + [GATEWAY, DEAD_LETTERS, *aws])


def _network_policies(app: AppSpec) -> list[dict[str, Any]]:
    label = "kfaas.dev/{}"
    has_sources = any(isinstance(s, QueueSource) for fn in app.functions for s in fn.sources)
    rabbitmq_from: list[dict[str, Any]] = [
        {"podSelector": {"matchLabels": {label.format("rabbitmq"): "client"}}}
    ]
    if has_sources:
        rabbitmq_from.append({"podSelector": {"matchLabels": dict(SOURCE_ADAPTER)}})
    # the RabbitMQ broker's ingress and dispatchers (components/rabbitmq-broker), in this namespace
    rabbitmq_from.append(
        {"podSelector": {"matchExpressions": [{"key": "eventing.knative.dev/broker", "operator": "Exists"}]}}
    )
    return [
        # Nothing reaches a pod of the namespace unless a policy below lets it in.
        _policy("default-deny-ingress", {}, []),
        _policy(
            "knative-services",
            {
                "matchExpressions": [
                    {"key": "serving.knative.dev/service", "operator": "In", "values": knative_services(app)}
                ]
            },
            [
                {
                    "from": [_peer_namespaces(INGRESS_NAMESPACE, KNATIVE_SERVING_NAMESPACE)],
                    "ports": _ports(*QUEUE_PROXY_PORTS),
                },
                {
                    "from": [_peer_namespaces(KNATIVE_SERVING_NAMESPACE)],
                    "ports": _ports(AUTOSCALER_METRICS_PORT),
                },
            ],
        ),
        _policy(
            "mongodb-clients",
            {"matchLabels": {"app.kubernetes.io/name": "mongodb"}},
            [
                {
                    "from": [{"podSelector": {"matchLabels": {label.format("mongodb"): "client"}}}],
                    "ports": _ports(27017),
                }
            ],
        ),
        _policy(
            "rabbitmq-clients",
            # the StatefulSet of the base and the RabbitmqCluster named rabbitmq both carry this label
            {"matchLabels": {"app.kubernetes.io/name": "rabbitmq"}},
            [
                {"from": rabbitmq_from, "ports": _ports(5672)},
                # eventing-rabbitmq's controllers and the RabbitMQ operators (the management API as well)
                {
                    "from": [_peer_namespaces(EVENTING_NAMESPACE, RABBITMQ_OPERATOR_NAMESPACE)],
                    "ports": _ports(5672, 15672),
                },
                # the nodes of a RabbitmqCluster with several replicas, among themselves
                {
                    "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "rabbitmq"}}}],
                    "ports": _ports(4369, 5672, 15672, 25672),
                },
            ],
        ),
        *_engine_policy(app),
        *_stream_policies(app),
    ]


def _stream_policies(app: AppSpec) -> list[dict[str, Any]]:
    """The consumers of stream sources with feeds: the brokers' deliveries (the appends) reach them on 8080."""
    return [
        _policy(
            consumer.name,
            {"matchLabels": {"app.kubernetes.io/name": consumer.name}},
            [
                {
                    "from": [
                        _peer_namespaces(EVENTING_NAMESPACE),
                        {
                            "podSelector": {
                                "matchExpressions": [
                                    {"key": "eventing.knative.dev/broker", "operator": "Exists"}
                                ]
                            }
                        },
                    ],
                    "ports": _ports(8080),
                }
            ],
        )
        for consumer, _, source in app.streams
        if source.feed
    ]


def _engine_policy(app: AppSpec) -> list[dict[str, Any]]:
    """The saga engine (a Deployment, not a Knative Service): the brokers' deliveries reach it on 8080."""
    if app.engine is None:
        return []
    return [
        _policy(
            app.engine.name,
            {"matchLabels": {"app.kubernetes.io/name": app.engine.name}},
            [
                {
                    "from": [
                        # the MT channel broker's filter and ingress
                        _peer_namespaces(EVENTING_NAMESPACE),
                        # the RabbitMQ broker's dispatchers, in this namespace
                        {
                            "podSelector": {
                                "matchExpressions": [
                                    {"key": "eventing.knative.dev/broker", "operator": "Exists"}
                                ]
                            }
                        },
                        # the API gateway: StartExecution and DescribeExecution go through it
                        {"podSelector": {"matchLabels": {"serving.knative.dev/service": GATEWAY}}},
                    ],
                    "ports": _ports(8080),
                }
            ],
        )
    ]


def _call_graph(app: AppSpec) -> str:
    """The comment heading 900-network-policies.yaml: who calls whom, from the descriptions."""
    import textwrap

    def line(text: str) -> list[str]:
        return textwrap.wrap(
            text, 108, initial_indent="#   ", subsequent_indent="#       ", break_on_hyphens=False
        )

    http = sorted(fn.name for fn in app.functions if fn.serves_http)
    lines = [
        "# Ingress to every pod of the namespace is denied unless a policy here allows it. Who calls whom,",
        "# from functions/*/function.yaml:",
        *line(f"the public ingress -> {GATEWAY}"),
        *line(f"{GATEWAY} -> {', '.join(http) or '(no http function)'} (their routes)"),
    ]
    for broker in app.brokers:
        triggers = sorted(
            f"{fn.name}-{t.name}" for fn in app.functions for t in fn.triggers if t.broker == broker
        )
        lines += line(
            f"broker {broker} -> {', '.join(triggers) or '(no trigger)'} (triggers), {DEAD_LETTERS}"
        )
        sources = sorted(
            f"{fn.name}-{s.name} ({s.kind})" for fn in app.functions for s in fn.sources if s.broker == broker
        )
        if sources:
            lines += line(f"sources -> broker {broker}: {', '.join(sources)}")
    publishers = sorted(fn.name for fn in app.functions if fn.publishes)
    if publishers:
        lines += line(f"functions that publish -> their broker: {', '.join(publishers)}")
    for service in ("mongodb", "rabbitmq", "smtp"):
        users = sorted(fn.name for fn in app.functions if service in fn.uses)
        if service == "rabbitmq":
            users.append(DEAD_LETTERS)
        if users:
            lines += line(f"-> {service}: {', '.join(users)}")
    lines += [
        "# A call to a Knative Service never comes straight from its caller: it arrives through Knative's",
        f"# data path, from the ingress (Kourier, namespace {INGRESS_NAMESPACE}) or the activator (namespace",
        f"# {KNATIVE_SERVING_NAMESPACE}; it holds requests while a service scales from zero), on queue-proxy's",
        f"# ports {', '.join(map(str, QUEUE_PROXY_PORTS))}; the autoscaler scrapes queue-proxy on "
        f"{AUTOSCALER_METRICS_PORT}. That is what these policies",
        "# can tell apart. Probes come from the kubelet on the node, which NetworkPolicy always lets in.",
        "# The CNI must enforce NetworkPolicy (kindnet does since kind v0.24; on minikube start with",
        "# --cni=calico). docs/kubernetes.md says more.",
    ]
    return "\n".join(lines) + "\n"


# --- the local-dev component (kind, minikube) --------------------------------------------------------------


def _rabbitmq_conf(user: str, password: str) -> str:
    """conf.d of the base's RabbitMQ (it replaces the image's, whose two settings it keeps)."""
    return "\n".join(
        [
            "listeners.tcp.default = 5672",
            "management.tcp.port = 15672",
            "loopback_users = none",
            "log.console = true",
            "log.file = false",  # the root filesystem is read-only: logs go to the console only
            f"default_user = {user}",
            f"default_pass = {password}",
            "default_user_tags.administrator = true",
            "default_permissions.configure = .*",
            "default_permissions.read = .*",
            "default_permissions.write = .*",
        ]
    )


def _local_dev_kustomization(app: AppSpec) -> dict[str, Any]:
    rabbitmq = "rabbitmq." + NAMESPACE + ".svc.cluster.local"
    mongodb = "mongodb." + NAMESPACE + ".svc.cluster.local"
    secrets: list[dict[str, Any]] = [
        {"name": MONGODB_ROOT_SECRET, "literals": ["username=root", "password=dev-only-mongo-root"]},
        {
            "name": RABBITMQ_SECRET,
            "literals": [
                "username=kfaas",
                "password=dev-only-rabbitmq",
                # The connection Secret of RabbitmqSource/Queue: management API URI and AMQP port.
                f"uri=http://{rabbitmq}:15672",
                "port=5672",
                f"AMQP_URL=amqp://kfaas:dev-only-rabbitmq@{rabbitmq}:5672/",
                # The configuration of the base's RabbitMQ (400-rabbitmq.yaml), its user included.
                "rabbitmq.conf=" + _rabbitmq_conf("kfaas", "dev-only-rabbitmq"),
            ],
        },
    ]
    for fn in mongodb_functions(app):
        password = f"dev-only-{fn.name}"
        url = (
            f"mongodb://{fn.name}:{password}@{mongodb}:27017/{MONGODB_DATABASE}?authSource={MONGODB_DATABASE}"
        )
        secrets.append(
            {
                "name": _mongodb_secret(fn),
                "literals": [f"username={fn.name}", f"password={password}", f"MONGODB_URL={url}"],
            }
        )
    if any(fn.kind == "lambda" for fn in app.functions):
        secrets.append(
            {
                "name": AWS_SECRET,
                "literals": [
                    "KFAAS_AWS_ACCESS_KEY_ID=AKIAKFAASDEVONLY0001",
                    "KFAAS_AWS_SECRET_ACCESS_KEY=dev-only-aws-secret-access-key",
                ],
            }
        )
    if any("s3" in fn.uses for fn in app.functions):
        # an existing store (docs/object-storage.md): these say where, with dev-only credentials
        secrets.append(
            {
                "name": S3_SECRET,
                "literals": [
                    f"S3_ENDPOINT_URL=http://versitygw.{NAMESPACE}.svc.cluster.local:7070",
                    "AWS_ACCESS_KEY_ID=dev-only-s3",
                    "AWS_SECRET_ACCESS_KEY=dev-only-s3-secret",
                    "AWS_REGION=us-east-1",
                ],
            }
        )
    for fn in app.functions:
        if fn.secrets:
            secrets.append(
                {
                    "name": f"kfaas-{fn.name}",
                    "literals": [f"{key}=dev-only-{key.lower().replace('_', '-')}" for key in fn.secrets],
                }
            )
    return {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1",
        "kind": "Component",
        "resources": ["mailpit.yaml"],
        "generatorOptions": {"disableNameSuffixHash": True, "labels": {"app.kubernetes.io/part-of": "kfaas"}},
        "secretGenerator": [{**s, "namespace": NAMESPACE} for s in secrets],
    }


MAILPIT_UID = 10025  # mailpit is one static binary: any user runs it, so one no image or host has


def _mailpit() -> list[dict[str, Any]]:
    labels = _labels("mailpit", "smtp")
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("mailpit", "smtp"),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/name": "mailpit"}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": _restricted_pod(MAILPIT_UID),
                        "containers": [
                            {
                                "name": "mailpit",
                                "image": MAILPIT_IMAGE,
                                "ports": [
                                    {"name": "smtp", "containerPort": 1025},
                                    {"name": "http", "containerPort": 8025},
                                ],
                                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                                "livenessProbe": {
                                    "httpGet": {"path": "/livez", "port": "http"},
                                    "periodSeconds": 20,
                                },
                                "resources": {
                                    "requests": {"cpu": "20m", "memory": "32Mi"},
                                    "limits": {"memory": "128Mi"},
                                },
                                "securityContext": _secure_container(MAILPIT_UID),
                                # its message store is a temporary SQLite database in the temp directory
                                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            }
                        ],
                        "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("mailpit", "smtp"),
            "spec": {
                "selector": {"app.kubernetes.io/name": "mailpit"},
                "ports": [
                    {"name": "smtp", "port": 1025, "targetPort": "smtp"},
                    {"name": "http", "port": 8025, "targetPort": "http"},
                ],
            },
        },
        # SMTP from the functions that send email: the label of `uses: [smtp]` here, the chart's label too
        # (docs/kubernetes.md applies this file beside a Helm release). The web UI is for port-forwards,
        # which NetworkPolicy does not see.
        _policy(
            "mailpit-smtp-clients",
            {"matchLabels": {"app.kubernetes.io/name": "mailpit"}},
            [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {"kfaas.dev/smtp": "client"}}},
                        {"podSelector": {"matchLabels": {"kfaas.dev/uses-smtp": "true"}}},
                    ],
                    "ports": _ports(1025),
                }
            ],
        ),
    ]


def render_k8s(app: AppSpec) -> dict[str, str]:
    def doc(*objects: dict[str, Any], note: str = "") -> str:
        return header("k8s") + note + (dump_yaml(*objects) if objects else "")

    triggers = [_trigger(fn, t) for fn in app.functions for t in fn.triggers]
    if app.engine is not None:  # task replies and the state machines' starts go to the engine's Service
        engine_ref = {"apiVersion": "v1", "kind": "Service", "name": app.engine.name}
        triggers += [_trigger(app.engine, t, engine_ref) for t in app.engine.triggers]
    for consumer, _, _ in app.streams:  # the feeds of a stream source go to its consumer's Service
        stream_ref = {"apiVersion": "v1", "kind": "Service", "name": consumer.name}
        triggers += [_trigger(consumer, t, stream_ref) for t in consumer.triggers]
    local_dev_note = (
        "# DEV-ONLY credentials for kind and minikube: never use this component on a shared cluster.\n"
        "# Also Mailpit, the SMTP server with a web UI that the functions' SMTP_HOST points at.\n"
    )
    return {
        f"{BASE}/310-mongodb-users.yaml": doc(*_mongodb_users(app)),
        f"{BASE}/500-broker.yaml": doc(*_brokers(app)),
        f"{BASE}/550-platform.yaml": doc(
            *_platform(app),
            note=(
                "# The API gateway is the one public URL of the API (the seed's API Gateway): it routes each\n"
                "# http function's routes to http://<function>.kfaas.svc.cluster.local, which stay\n"
                "# cluster-local. kfaas-dead-letters keeps what the broker and the triggers dead-letter in\n"
                "# RabbitMQ (t.default.<function>-<trigger>.dlq): `kfaas dlq` lists and redrives it.\n"
            ),
        ),
        f"{BASE}/600-functions.yaml": doc(*[_function(fn) for fn in app.functions]),
        f"{BASE}/700-triggers.yaml": doc(
            *triggers,
            note=(
                "# Triggers use only filter.attributes (exact match, ANDed: all the RabbitMQ broker honours).\n"
                "# delivery.timeout of function.yaml is not rendered: the Trigger CRD has no such field; on\n"
                "# Knative an attempt is bounded by the subscriber's timeoutSeconds instead.\n"
            ),
        ),
        f"{BASE}/800-sources.yaml": doc(*_sources(app)),
        f"{BASE}/900-network-policies.yaml": doc(*_network_policies(app), note=_call_graph(app)),
        f"{LOCAL_DEV}/kustomization.yaml": doc(_local_dev_kustomization(app), note=local_dev_note),
        f"{LOCAL_DEV}/mailpit.yaml": doc(*_mailpit()),
    }
