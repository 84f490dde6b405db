"""The generated parts of ``k8s/`` (kustomize) from the function descriptions.

Rendered here (everything that depends on the functions):

- ``k8s/base/310-mongodb-users.yaml``: the mongosh script and the Job creating one role and one user per
  function (the seed's IAM policies);
- ``k8s/base/500-broker.yaml``: one Broker per broker name used, with a delivery spec;
- ``k8s/base/550-platform.yaml``: the API gateway and the dead-letter sink ``kfaas dead-letters`` (Knative
  Services);
- ``k8s/base/600-functions.yaml``: one Knative Service per function;
- ``k8s/base/700-triggers.yaml``: one Trigger per trigger;
- ``k8s/base/800-sources.yaml``: RabbitmqSource (+ its quorum Queue), PingSource, SinkBinding;
- ``k8s/components/local-dev/``: dev-only Secrets and Mailpit for kind and minikube.

The namespace, MongoDB, RabbitMQ, the network policies, the component switching to the RabbitMQ broker and
the overlays are written by hand (they do not change when a function is added).
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
    mongodb_functions,
    mongodb_users_script,
    password_env,
)
from kfaas.spec import AppSpec, Delivery, FunctionSpec, PingSource, QueueSource, Trigger

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
MONGODB_ROOT_SECRET = "kfaas-mongodb"  # noqa: S105 (the name of a Secret)
FUNCTION_URL_TEMPLATE = "http://{name}." + NAMESPACE + ".svc.cluster.local"

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
    env = [
        _value_env("KFAAS_FUNCTION", fn.name),
        _value_env("FUNCTION_TARGET", fn.target),
        _value_env("FUNCTION_SOURCE", f"/app/function/{fn.source}"),
    ]
    if fn.kind == "cloudevent":
        env.append(_value_env("FUNCTION_SIGNATURE_TYPE", "cloudevent"))
    # PORT is set by Knative (a reserved variable); K_SINK by the SinkBinding.
    if "mongodb" in fn.uses:
        env.append(_secret_env("MONGODB_URL", _mongodb_secret(fn), "MONGODB_URL"))
        env.append(_config_env("MONGODB_DATABASE"))
    if "rabbitmq" in fn.uses:
        env.append(_secret_env("AMQP_URL", RABBITMQ_SECRET, "AMQP_URL"))
    if "smtp" in fn.uses:
        env += [_config_env("SMTP_HOST"), _config_env("SMTP_PORT"), _config_env("MAIL_FROM")]
    env += [_value_env(k, v) for k, v in fn.env.items()]
    env += [_secret_env(key, f"kfaas-{fn.name}", key) for key in fn.secrets]
    return env


def _client_labels(uses: list[str]) -> dict[str, str]:
    """Labels the network policies of MongoDB and RabbitMQ let in."""
    labels = {}
    if "mongodb" in uses:
        labels["kfaas.dev/mongodb"] = "client"
    if "rabbitmq" in uses:
        labels["kfaas.dev/rabbitmq"] = "client"
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
                    "labels": {**_labels(name, component), **_client_labels(uses)},
                    "annotations": annotations,
                },
                "spec": {
                    "timeoutSeconds": timeout,
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
    return _knative_service(
        fn.name,
        "function",
        image_ref=image(fn.name),
        env=_function_env(fn),
        uses=list(fn.uses),
        annotations=_autoscaling(fn),
        timeout=fn.timeout,
        memory=fn.memory,
        cpu=fn.cpu,
    )


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
        timeout=max([fn.timeout for fn in app.functions if fn.kind == "http"] or [30]),
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
    return [gateway, dead_letters]


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


def _trigger(fn: FunctionSpec, trigger: Trigger) -> dict[str, Any]:
    name = f"{fn.name}-{trigger.name}"
    spec: dict[str, Any] = {"broker": trigger.broker}
    if trigger.filter:
        spec["filter"] = {"attributes": dict(trigger.filter)}
    spec["subscriber"] = {"ref": _ref(fn.name)}
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


def _sink_binding(fn: FunctionSpec) -> dict[str, Any]:
    broker = (fn.triggers[0].broker if fn.triggers else None) or "default"
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "SinkBinding",
        "metadata": _meta(f"{fn.name}-sink", "sink-binding"),
        # Sets K_SINK (the broker ingress URL) in the function's pods: ctx.publish sends there.
        "spec": {"subject": _ref(fn.name), "sink": _broker_ref(broker)},
    }


def _sources(app: AppSpec) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for fn in app.functions:
        for source in fn.sources:
            if isinstance(source, QueueSource):
                docs += _queue_source(fn, source)
            else:
                docs.append(_ping_source(fn, source))
    docs += [_sink_binding(fn) for fn in app.functions if fn.publishes]
    return docs


def _mongodb_users(app: AppSpec) -> list[dict[str, Any]]:
    users = mongodb_functions(app)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("kfaas-mongodb-users", "database"),
        "data": {"mongodb-users.js": mongodb_users_script(app)},
    }
    env = [
        _secret_env("ROOT_USERNAME", MONGODB_ROOT_SECRET, "username"),
        _secret_env("ROOT_PASSWORD", MONGODB_ROOT_SECRET, "password"),
        _value_env("HOME", "/tmp"),
        *[_secret_env(password_env(fn), _mongodb_secret(fn), "password") for fn in users],
    ]
    security = _secure_container(999)  # the mongodb user of the mongo image
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
                    "containers": [
                        {
                            "name": "mongosh",
                            "image": MONGO_IMAGE,
                            "command": [
                                "mongosh",
                                "--quiet",
                                "--host",
                                f"mongodb.{NAMESPACE}.svc.cluster.local",
                                "--username",
                                "$(ROOT_USERNAME)",
                                "--password",
                                "$(ROOT_PASSWORD)",
                                "--authenticationDatabase",
                                "admin",
                                "--file",
                                "/kfaas/mongodb-users.js",
                            ],
                            "env": env,
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "128Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": security,
                            "volumeMounts": [
                                {"name": "script", "mountPath": "/kfaas", "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "script", "configMap": {"name": "kfaas-mongodb-users"}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    return [config_map, job]


# --- the local-dev component (kind, minikube) --------------------------------------------------------------


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


def _mailpit() -> list[dict[str, Any]]:
    labels = _labels("mailpit", "smtp")
    security = _secure_container(1000)
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
                        "containers": [
                            {
                                "name": "mailpit",
                                "image": MAILPIT_IMAGE,
                                "ports": [
                                    {"name": "smtp", "containerPort": 1025},
                                    {"name": "http", "containerPort": 8025},
                                ],
                                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                                "resources": {
                                    "requests": {"cpu": "20m", "memory": "32Mi"},
                                    "limits": {"memory": "128Mi"},
                                },
                                "securityContext": security,
                            }
                        ]
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
    ]


def render_k8s(app: AppSpec) -> dict[str, str]:
    def doc(*objects: dict[str, Any], note: str = "") -> str:
        return header("k8s") + note + (dump_yaml(*objects) if objects else "")

    triggers = [_trigger(fn, t) for fn in app.functions for t in fn.triggers]
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
        f"{LOCAL_DEV}/kustomization.yaml": doc(_local_dev_kustomization(app), note=local_dev_note),
        f"{LOCAL_DEV}/mailpit.yaml": doc(*_mailpit()),
    }
