"""CloudFormation's intrinsic functions, resolved to what the imported resources are called here.

``Ref`` and ``Fn::GetAtt`` of an imported resource give its kfaas name (a table is its collection, a queue
its RabbitMQ queue, a function its kfaas name) or the ARN AWS would give, built from ``lambda.region`` and
``lambda.account``; ``Fn::Sub`` and ``Fn::Join`` are resolved from those. What cannot be resolved (a
parameter without a value, ``Fn::If``, an attribute nothing here has) is None, with the reason kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Names", "Resolver"]

_SUB = re.compile(r"\$\{([^}]*)\}")


@dataclass
class Names:
    """What each imported resource is called in kfaas, by logical id."""

    functions: dict[str, str] = field(default_factory=dict)
    collections: dict[str, str] = field(default_factory=dict)
    queues: dict[str, str] = field(default_factory=dict)
    statemachines: dict[str, str] = field(default_factory=dict)
    others: dict[str, str] = field(default_factory=dict)  # buckets, streams, topics: their names only


@dataclass
class Resolver:
    names: Names
    parameters: dict[str, str]
    region: str
    account: str
    types: dict[str, str]  # logical id → CloudFormation type
    stack: str = "kfaas"
    reason: str = ""

    def _arn(self, service: str, rest: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{rest}"

    def ref(self, name: str) -> str | None:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        n = self.names
        for table in (n.functions, n.collections, n.queues, n.others):
            if name in table:
                return table[name]
        if name in n.statemachines:
            return self._arn("states", f"stateMachine:{n.statemachines[name]}")
        if name in self.types:
            self.reason = f"Ref {name}: a {self.types[name]}, which has no counterpart here"
        elif name.startswith("AWS::"):
            self.reason = f"Ref {name}: a pseudo parameter with no value here"
        else:
            self.reason = f"Ref {name}: the parameter has no value (pass --parameter {name}=VALUE)"
        return None

    def get_att(self, name: str, attribute: str) -> str | None:
        n = self.names
        if name in n.functions and attribute == "Arn":
            return self._arn("lambda", f"function:{n.functions[name]}")
        if name in n.queues:
            queue = n.queues[name]
            values = {"Arn": self._arn("sqs", queue), "QueueName": queue, "QueueUrl": queue}
            if attribute in values:
                return values[attribute]
        if name in n.collections and attribute == "Arn":
            return self._arn("dynamodb", f"table/{n.collections[name]}")
        if name in n.statemachines and attribute in ("Arn", "Name"):
            machine = n.statemachines[name]
            return machine if attribute == "Name" else self._arn("states", f"stateMachine:{machine}")
        self.reason = f"Fn::GetAtt {name}.{attribute}: nothing here has that attribute"
        return None

    def resolve(self, value: Any) -> str | None:  # noqa: PLR0911 (one branch per SAM property or event kind)
        """``value`` as a string, or None (``self.reason`` says why)."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        if not isinstance(value, dict) or len(value) != 1:
            self.reason = f"{value!r} is not a string or an intrinsic function"
            return None
        ((key, arg),) = value.items()
        if key == "Ref" and isinstance(arg, str):
            return self.ref(arg)
        if key == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else arg
            if isinstance(parts, list) and len(parts) == 2 and all(isinstance(p, str) for p in parts):
                return self.get_att(parts[0], parts[1])
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list):
            parts = [self.resolve(p) for p in arg[1]]
            return None if any(p is None for p in parts) else str(arg[0]).join(p or "" for p in parts)
        self.reason = f"{key} cannot be resolved when importing"
        return None

    def _sub(self, arg: Any) -> str | None:
        text, variables = (
            (arg, {}) if isinstance(arg, str) else (arg[0], arg[1]) if isinstance(arg, list) else ("", {})
        )
        if not isinstance(text, str) or not isinstance(variables, dict):
            self.reason = "Fn::Sub takes a string or [string, {variables}]"
            return None
        failed = False

        def one(match: re.Match[str]) -> str:
            nonlocal failed
            inner = match.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in variables:
                got = self.resolve(variables[inner])
            elif "." in inner and not inner.startswith("AWS::"):
                got = self.get_att(*inner.split(".", 1))
            else:
                got = self.ref(inner)
            if got is None:
                failed = True
                return ""
            return got

        out = _SUB.sub(one, text)
        return None if failed else out
