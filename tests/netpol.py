"""Reading rendered manifests as a cluster would: the pods they make, which of them a NetworkPolicy selects,
who may reach them; and the per-pod rules that stand in for checks checkov skips (.checkov.yaml).

The render and chart tests evaluate the rendered NetworkPolicies against the labels of the rendered pods
(``selects`` implements matchLabels and matchExpressions as the API defines them), so a policy that lets in
the wrong pods, or not the right ones, fails a test rather than a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KNATIVE_SERVICE = ("serving.knative.dev", "Service")


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether a label selector matches ``labels`` (an empty selector matches everything)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass(frozen=True)
class Pod:
    """A pod as it will run: its kind and name of origin, its labels, its spec."""

    kind: str
    name: str
    labels: dict[str, str]
    spec: dict[str, Any]


def pods(objs: list[dict[str, Any]]) -> list[Pod]:
    """Every pod the manifests make. A Knative Service's pods also get ``serving.knative.dev/service``."""
    out = []
    for obj in objs:
        group = obj["apiVersion"].rpartition("/")[0]
        if obj["kind"] == "Pod":
            out.append(Pod("Pod", obj["metadata"]["name"], obj["metadata"].get("labels", {}), obj["spec"]))
        elif obj["kind"] in ("Deployment", "StatefulSet", "Job") or (group, obj["kind"]) == KNATIVE_SERVICE:
            template = obj["spec"]["template"]
            labels = dict(template.get("metadata", {}).get("labels", {}))
            if (group, obj["kind"]) == KNATIVE_SERVICE:
                labels["serving.knative.dev/service"] = obj["metadata"]["name"]
            out.append(Pod(obj["kind"], obj["metadata"]["name"], labels, template["spec"]))
    return out


def policies(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == "NetworkPolicy"]


@dataclass(frozen=True)
class Peer:
    """Who connects: a pod of the same namespace (its labels) or any pod of another namespace."""

    labels: dict[str, str] | None = None
    namespace: str | None = None  # None: the policies' own namespace


def _peer_matches(rule_peer: dict[str, Any], peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        return False
    if "namespaceSelector" in rule_peer:
        if peer.namespace is None:
            return False  # namespaces are matched by name label below; the own namespace carries none here
        namespace_labels = {"kubernetes.io/metadata.name": peer.namespace}
        if not selects(rule_peer["namespaceSelector"], namespace_labels):
            return False
        return "podSelector" not in rule_peer or selects(rule_peer["podSelector"], peer.labels or {})
    # a podSelector alone: pods of the policy's own namespace
    return peer.namespace is None and selects(rule_peer.get("podSelector"), peer.labels or {})


def allowed(objs: list[dict[str, Any]], target: Pod, peer: Peer, port: int) -> bool:
    """Whether ``peer`` may open a TCP connection to ``target`` on ``port`` under the rendered policies.

    As the API defines it: a pod that no policy selects accepts everything; a selected pod accepts what
    at least one rule of one selecting policy allows.
    """
    selecting = [
        p
        for p in policies(objs)
        if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], target.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(
                p.get("port") in (port, None) and p.get("protocol", "TCP") == "TCP" for p in ports
            ):
                continue
            sources = rule.get("from")
            if not sources or any(_peer_matches(source, peer) for source in sources):
                return True
    return False


# The official images of MongoDB and RabbitMQ run as their own user, 999, which owns the image's files and
# existing data volumes; every other container runs with a UID no image or host user has (.checkov.yaml).
IMAGE_USERS = {"mongodb": 999, "rabbitmq": 999}


def check_uid_and_probes(pod: Pod, image_user: int | None) -> None:
    """Stands in for checkov's CKV_K8S_40 and CKV_K8S_8/9, skipped as a whole in .checkov.yaml."""
    where = f"{pod.kind} {pod.name}"
    for c in pod.spec["containers"]:
        uid = c.get("securityContext", {}).get(
            "runAsUser", pod.spec.get("securityContext", {}).get("runAsUser")
        )
        if image_user is None:
            assert uid is not None, f"{where}: no runAsUser"
            assert uid >= 10000, f"{where}: runs as {uid}"
        else:
            assert uid == image_user, f"{where}: runs as {uid}"
        if c.get("ports"):  # a server: both probes
            assert "readinessProbe" in c, where
            assert "livenessProbe" in c, where
