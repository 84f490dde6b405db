"""CloudFormation resources (as aws-sam-translator made them) → kfaas descriptions, with the report's items.

The translator has already applied Globals, made the implicit APIs, turned each event into its resource
(an ``AWS::Lambda::EventSourceMapping``, an ``AWS::Events::Rule``, a path of an API's OpenAPI body) and
expanded the policy templates into IAM statements. This module reads those, so a template means what it
means on AWS; the state machines are taken from the template as written (their definitions stay unchanged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfaas.aws.sam._intrinsics import Names, Resolver
from kfaas.aws.sam._report import Report
from kfaas.aws.sam._template import Template
from kfaas.spec import PING_EVENT_TYPE, function_name

__all__ = ["FunctionPlan", "MachinePlan", "Plan", "plan"]

_DNS = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_SWAGGER_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}
_INTEGRATION_URI = re.compile(r"functions/\$\{(\w+?)(?:\.Arn)?\}/invocations")
# the managed policies SAM adds for what the function's events need: their counterpart is the mapped event
_IMPLIED_POLICIES = (
    "AWSLambdaBasicExecutionRole",
    "AWSLambdaSQSQueueExecutionRole",
    "AWSLambdaKinesisExecutionRole",
    "AWSLambdaDynamoDBExecutionRole",
    "AWSLambdaMSKExecutionRole",
)
_DYNAMODB_READ = {
    "GetItem",
    "BatchGetItem",
    "Query",
    "Scan",
    "DescribeTable",
    "ConditionCheckItem",
    "PartiQLSelect",
    "GetRecords",
    "GetShardIterator",
    "DescribeStream",
    "ListStreams",
}
# resources the translator makes beside the ones it maps: their meaning is carried by what they serve
_PLUMBING = {
    "AWS::Lambda::Permission",
    "AWS::ApiGateway::Deployment",
    "AWS::ApiGateway::Stage",
    "AWS::ApiGatewayV2::Stage",
    "AWS::Lambda::Version",
}
# the Lambda properties the translator sets on its own or that kfaas reads elsewhere
_FUNCTION_HANDLED = {
    "Code",
    "Handler",
    "Runtime",
    "Timeout",
    "MemorySize",
    "Environment",
    "Role",
    "Tags",
    "Description",
    "FunctionName",
    "ReservedConcurrentExecutions",
    "PackageType",
    "ImageConfig",
    "DeadLetterConfig",
    "Architectures",
    "TracingConfig",
}
ASYNC_SUCCESS_TYPE = "Lambda Function Invocation Result - Success"  # EventBridge destinations' detail-type


@dataclass
class FunctionPlan:
    logical_id: str
    name: str
    description: dict[str, Any]
    code_uri: Path | None = None  # a local folder or zip to copy
    inline: tuple[str, str] | None = None  # (file name, code) of InlineCode
    consumes: list[str] = field(default_factory=list)


@dataclass
class MachinePlan:
    logical_id: str
    name: str
    description: dict[str, Any]
    snippet: dict[str, Any]  # {logical id: the resource as written}
    definition_file: Path | None = None  # DefinitionUri, copied beside the snippet
    functions: list[str] = field(default_factory=list)


@dataclass
class Plan:
    functions: list[FunctionPlan]
    machines: list[MachinePlan]
    report: Report


def kebab(logical_id: str) -> str:
    """The kfaas name of a logical id, as the state machine Resources name functions (``GetUserFunction`` →
    ``get-user``)."""
    return function_name({"Fn::GetAtt": [logical_id, "Arn"]}) or logical_id.lower()


def _ref(value: Any) -> str | None:
    """The logical id a ``Ref`` or ``Fn::GetAtt`` points at."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and isinstance(arg, str):
            return arg
        if key == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else arg
            if isinstance(parts, list) and parts and isinstance(parts[0], str):
                return parts[0]
    return None


def _seconds(value: Any) -> str:
    return f"PT{int(value)}S"


def rate_to_cron(expression: str) -> str | None:
    """EventBridge's ``rate(5 minutes)`` and six-field ``cron(...)`` as a five-field cron, or None."""
    m = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2).rstrip("s")
        if n < 1:
            return None
        step = "*" if n == 1 else f"*/{n}"
        return {"minute": f"{step} * * * *", "hour": f"0 {step} * * *", "day": f"0 0 {step} * *"}[unit]
    m = re.fullmatch(r"cron\((.+)\)", expression.strip())
    if not m:
        return None
    fields = m.group(1).split()
    if len(fields) != 6 or fields[5] not in ("*", "?"):
        return None
    minute, hour, dom, month, dow = (f.replace("?", "*") for f in fields[:5])

    def day(match: re.Match[str]) -> str:  # EventBridge numbers days 1-7 from Sunday, cron 0-6
        return str(int(match.group(0)) - 1)

    if re.search(r"[LW#]", dom + dow):
        return None
    dow = re.sub(r"\d+", day, dow)
    return " ".join([minute, hour, dom, month, dow])


def _valid_cron(expression: str) -> bool:
    from croniter import croniter

    return bool(croniter.is_valid(expression))


def _pattern_filter(pattern: Any) -> tuple[dict[str, str], list[str]]:
    """The exact matches of an EventBridge pattern as CloudEvent attributes, and what is left over."""
    if not isinstance(pattern, dict):
        return {}, ["the pattern is not an object"]
    attributes = {"source": "source", "detail-type": "type", "id": "id"}
    exact: dict[str, str] = {}
    left: list[str] = []
    for key, value in pattern.items():
        if key in attributes and isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
            exact[attributes[key]] = value[0]
        else:
            left.append(f"{key}: {value!r}")
    return exact, left


class _Mapper:
    def __init__(
        self, template: Template, report: Report, region: str, account: str, known_functions: set[str]
    ) -> None:
        self.t = template
        self.r = report
        self.cfn: dict[str, dict[str, Any]] = template.cfn.get("Resources", {})
        self.types = {k: str(v.get("Type")) for k, v in self.cfn.items()}
        self.region = region
        self.account = account
        self.known_functions = known_functions
        self.names = Names()
        self.res = Resolver(self.names, template.parameters, region, account, self.types)
        self.plans: dict[str, FunctionPlan] = {}
        self.machines: dict[str, MachinePlan] = {}
        self.done: set[str] = set()  # logical ids accounted for (mapped, consumed or reported)
        self.table_keys: dict[str, list[str]] = {}  # collection → its table's key schema (partition, sort)

    # -- helpers ----------------------------------------------------------------------------------------

    def props(self, logical_id: str) -> dict[str, Any]:
        p = self.cfn.get(logical_id, {}).get("Properties")
        return p if isinstance(p, dict) else {}

    def sam_type(self, logical_id: str) -> str:
        return str(self.t.sam_resource(logical_id).get("Type") or self.types.get(logical_id, "?"))

    def text(self, value: Any) -> str | None:
        self.res.reason = ""
        return self.res.resolve(value)

    def _name_of(self, logical_id: str, prop: str | None) -> str:
        if prop is not None:
            value = self.props(logical_id).get(prop)
            if value is not None:
                got = self.text(value)
                if got:
                    return got
        return kebab(logical_id)

    def fn_of(self, value: Any) -> FunctionPlan | None:
        """The function a FunctionName / Arn / Ref points at (through an alias or a version)."""
        target = _ref(value)
        if target and self.types.get(target) in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
            target = _ref(self.props(target).get("FunctionName"))
        return self.plans.get(target or "")

    # -- names ------------------------------------------------------------------------------------------

    def collect_names(self) -> None:
        for lid, type_ in self.types.items():
            if type_ == "AWS::Lambda::Function":
                name = kebab(lid)
                if not _DNS.match(name):
                    from kfaas.aws.sam._template import SamError

                    raise SamError(
                        f"function {lid}: its name here, {name!r}, is not a DNS label of at most 63 characters"
                    )
                self.names.functions[lid] = name
            elif type_ == "AWS::DynamoDB::Table":
                self.names.collections[lid] = self._name_of(lid, "TableName")
                schema = self.props(lid).get("KeySchema") or []
                ordered = sorted(schema, key=lambda k: 0 if k.get("KeyType") == "HASH" else 1)
                keys = [str(k.get("AttributeName")) for k in ordered if k.get("AttributeName")]
                if keys:
                    self.table_keys[self.names.collections[lid]] = keys
            elif type_ == "AWS::SQS::Queue":
                self.names.queues[lid] = self._name_of(lid, "QueueName")
            elif type_ == "AWS::StepFunctions::StateMachine":
                self.names.statemachines[lid] = kebab(lid)
            elif type_ == "AWS::S3::Bucket":
                self.names.others[lid] = self._name_of(lid, "BucketName")
            elif type_ == "AWS::Kinesis::Stream":
                self.names.others[lid] = self._name_of(lid, "Name")
            elif type_ == "AWS::SNS::Topic":
                self.names.others[lid] = self._name_of(lid, "TopicName")
        names = list(self.names.functions.values())
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            from kfaas.aws.sam._template import SamError

            raise SamError(f"two functions would both be named {', '.join(dup)} here: rename one logical id")

    # -- functions --------------------------------------------------------------------------------------

    def function(self, lid: str) -> None:  # noqa: PLR0912, PLR0915 (one branch per SAM property or event kind)
        p = self.props(lid)
        sam = self.t.sam_resource(lid).get("Properties") or {}
        globals_ = ((self.t.sam.get("Globals") or {}).get("Function")) or {}
        name = self.names.functions[lid]
        stype = self.sam_type(lid)
        d: dict[str, Any] = {"description": str(p.get("Description") or f"{lid}, imported from SAM")}
        d["kind"] = "lambda"
        plan = FunctionPlan(lid, name, d)
        self.plans[lid] = plan
        self.done.add(lid)
        code: dict[str, Any] = p["Code"] if isinstance(p.get("Code"), dict) else {}
        if p.get("PackageType") == "Image":
            image = self.text(code.get("ImageUri"))
            if image is None:
                self.r.add("unmapped", lid, stype, "ImageUri", self.res.reason or "no image")
                image = "REPLACE-WITH-THE-IMAGE"
            d["image"] = image
            config = p.get("ImageConfig") or {}
            if isinstance(config.get("Command"), list) and config["Command"]:
                d["handler"] = str(config["Command"][0])
            for key in sorted(set(config) - {"Command"}):
                self.r.add(
                    "unmapped",
                    lid,
                    stype,
                    f"ImageConfig.{key}",
                    "the image runs with its own entrypoint and folder",
                )
            self.r.add(
                "mapped",
                lid,
                stype,
                "PackageType: Image",
                f"functions/{name}: image {image}, run unchanged beside kfaas's container",
            )
        else:
            runtime = str(p.get("Runtime") or "")
            d["runtime"] = runtime
            d["handler"] = str(p.get("Handler") or "")
            self._code(plan, lid, stype, code, sam, globals_, runtime)
        if "Timeout" in p:
            d["timeout"] = int(p["Timeout"])
        else:
            d["timeout"] = 3
            self.r.add("noted", lid, stype, "Timeout", "not set: Lambda's default, 3 seconds")
        d["memory"] = f"{int(p.get('MemorySize', 128))}Mi"
        self._environment(d, lid, stype, p)
        self._scaling(d, lid, stype, p)
        if p.get("Architectures"):
            self.r.add(
                "noted",
                lid,
                stype,
                "Architectures",
                f"{p['Architectures']}: the image is built for the machine that builds it",
            )
        if p.get("TracingConfig"):
            self.r.add(
                "noted", lid, stype, "Tracing", "X-Ray: kfaas carries W3C trace context (traceparent) instead"
            )
        if p.get("FunctionName") is not None:
            self.r.add(
                "noted",
                lid,
                stype,
                "FunctionName",
                f"{self.text(p['FunctionName'])!s}: the function is {name} here (from its logical id)",
            )
        for key in sorted(set(p) - _FUNCTION_HANDLED):
            why = {
                "Layers": "Lambda layers have no counterpart: put what the layer holds into the function's folder or image",
                "VpcConfig": "no VPC here: the function reaches what its cluster network (and NetworkPolicy) allows",
                "KmsKeyArn": "environment variables are not encrypted with a KMS key here: use secrets",
                "FileSystemConfigs": "EFS mounts have no counterpart",
                "SnapStart": "no SnapStart",
                "EphemeralStorage": "/tmp is an emptyDir of the pod",
                "LoggingConfig": "logs are the container's output",
                "CodeSigningConfigArn": "no code signing",
                "RuntimeManagementConfig": "the runtime is the image's",
            }.get(key, "no counterpart in a function description")
            self.r.add("unmapped", lid, stype, key, why)
        dlq = p.get("DeadLetterConfig") or {}
        if dlq.get("TargetArn"):
            target = _ref(dlq["TargetArn"]) or str(dlq["TargetArn"])
            self.r.add(
                "noted",
                lid,
                stype,
                "DeadLetterQueue",
                f"{target}: events of its triggers that fail every retry land in each trigger's own dead-letter "
                f"queue with the reason (kfaas dlq show {name}-<trigger>), not in {target}",
            )
            self.done.add(target)
        role = _ref(p.get("Role"))
        if role:
            self._role(plan, lid, stype, role)
        auto = sam.get("AutoPublishAlias") or globals_.get("AutoPublishAlias")
        if auto:
            self.r.add(
                "noted",
                lid,
                stype,
                "AutoPublishAlias",
                f"{auto}: no versions or aliases here ($LATEST only); Knative revisions roll out each change",
            )
        self.r.add(
            "mapped",
            lid,
            stype,
            "function",
            f"functions/{name} (kind lambda, {d.get('runtime') or 'image'}, timeout {d['timeout']}s, memory {d['memory']})",
        )

    def _code(  # noqa: PLR0917
        self,
        plan: FunctionPlan,
        lid: str,
        stype: str,
        code: dict[str, Any],
        sam: dict[str, Any],
        globals_: dict[str, Any],
        runtime: str,
    ) -> None:
        name = plan.name
        if "ZipFile" in code:  # InlineCode
            inline = code["ZipFile"]
            handler = str(plan.description.get("handler") or "")
            module = handler.rpartition(".")[0]
            if runtime.startswith("python") and module and isinstance(inline, str):
                plan.inline = (module.replace(".", "/") + ".py", inline)
                self.r.add("mapped", lid, stype, "InlineCode", f"functions/{name}/{plan.inline[0]}")
            else:
                self.r.add(
                    "unmapped",
                    lid,
                    stype,
                    "InlineCode",
                    "inline code is written out for python runtimes only: put the code in the folder",
                )
            return
        uri = sam.get("CodeUri", globals_.get("CodeUri"))
        if isinstance(uri, str) and not uri.startswith("s3://"):
            path = (self.t.base / uri).resolve()
            plan.code_uri = path
            if path.is_dir() or (path.is_file() and path.suffix == ".zip"):
                self.r.add("mapped", lid, stype, "CodeUri", f"{uri}: copied into functions/{name}/")
            else:
                hint = "the built bootstrap" if not runtime.startswith("python") else "the handler's module"
                self.r.add(
                    "noted",
                    lid,
                    stype,
                    "CodeUri",
                    f"{uri} is not there yet (build it first, as sam build does): put {hint} into functions/{name}/",
                )
                plan.code_uri = None
            return
        if uri is None:
            self.r.add(
                "noted",
                lid,
                stype,
                "CodeUri",
                f"none: the code is the template's folder; put it into functions/{name}/",
            )
            return
        self.r.add(
            "unmapped",
            lid,
            stype,
            "CodeUri",
            f"{uri!r}: code on S3 is not fetched; put it into functions/{name}/",
        )

    def _environment(self, d: dict[str, Any], lid: str, stype: str, p: dict[str, Any]) -> None:
        variables = ((p.get("Environment") or {}).get("Variables")) or {}
        env: dict[str, str] = {}
        for key, value in variables.items():
            got = self.text(value)
            if got is None:
                self.r.add("unmapped", lid, stype, f"Environment.{key}", self.res.reason)
                continue
            env[str(key)] = got
            target = _ref(value) if isinstance(value, dict) else None
            if target in self.names.queues:
                self.r.add(
                    "noted",
                    lid,
                    stype,
                    f"Environment.{key}",
                    f"{got}: the queue's name (code that sends with the AWS SDK reaches RabbitMQ through kfaas's SQS endpoint, AWS_ENDPOINT_URL_SQS)",
                )
        if env:
            d["env"] = env
            self.r.add("mapped", lid, stype, "Environment", f"env: {', '.join(sorted(env))}")

    def _scaling(self, d: dict[str, Any], lid: str, stype: str, p: dict[str, Any]) -> None:
        scaling: dict[str, int] = {}
        reserved = p.get("ReservedConcurrentExecutions")
        if reserved is not None:
            if int(reserved) == 0:
                self.r.add(
                    "unmapped",
                    lid,
                    stype,
                    "ReservedConcurrentExecutions",
                    "0 throttles every invocation: kfaas has no such switch",
                )
            else:
                scaling["max"] = int(reserved)
                self.r.add(
                    "mapped", lid, stype, "ReservedConcurrentExecutions", f"scaling.max: {reserved} instances"
                )
        for alias_id, alias in self.cfn.items():
            if (
                alias.get("Type") != "AWS::Lambda::Alias"
                or _ref(self.props(alias_id).get("FunctionName")) != lid
            ):
                continue
            self.done.add(alias_id)
            provisioned = (self.props(alias_id).get("ProvisionedConcurrencyConfig") or {}).get(
                "ProvisionedConcurrentExecutions"
            )
            if provisioned is not None:
                scaling["min"] = int(provisioned)
                scaling["max"] = max(scaling.get("max", 10), int(provisioned))
                self.r.add(
                    "mapped",
                    lid,
                    stype,
                    "ProvisionedConcurrencyConfig",
                    f"scaling.min: {provisioned} instances kept warm",
                )
        if scaling:
            d["scaling"] = scaling

    def _role(self, plan: FunctionPlan, lid: str, stype: str, role: str) -> None:
        self.done.add(role)
        if role in (self.t.sam.get("Resources") or {}):
            self.r.add(
                "unmapped",
                lid,
                stype,
                "Role",
                f"{role}: an IAM role of the template's own; permissions here are the function's database role",
            )
            return
        p = self.props(role)
        for arn in p.get("ManagedPolicyArns") or []:
            text = str(arn if isinstance(arn, str) else self.text(arn))
            policy = text.rsplit("/", 1)[-1]
            if policy in _IMPLIED_POLICIES:
                continue
            if policy == "AWSXrayWriteOnlyAccess":
                continue  # Tracing: noted with the function
            self.r.add(
                "unmapped",
                lid,
                stype,
                f"Policies: {policy}",
                "an AWS managed policy: nothing here calls AWS with it",
            )
        collections: dict[str, bool] = {}  # collection → writes
        for policy in p.get("Policies") or []:
            for statement in ((policy.get("PolicyDocument") or {}).get("Statement")) or []:
                self._statement(plan, lid, stype, statement, collections)
        if collections:
            d = plan.description
            writes = any(collections.values())
            d["uses"] = sorted({*d.get("uses", []), "mongodb"})
            d["database"] = {"role": "readWrite" if writes else "read", "collections": sorted(collections)}
            indexes = [
                {"collection": c, "keys": self.table_keys[c]}
                for c in sorted(collections)
                if c in self.table_keys
            ]
            if indexes:
                d["database"]["indexes"] = indexes
            mixed = writes and not all(collections.values())
            self.r.add(
                "noted" if mixed else "mapped",
                lid,
                stype,
                "Policies (DynamoDB)",
                f"database: {d['database']['role']} on {', '.join(sorted(collections))}"
                + (" (one role for all its collections: reads become readWrite too)" if mixed else ""),
            )

    def _statement(  # noqa: PLR0911, PLR0912
        self,
        plan: FunctionPlan,
        lid: str,
        stype: str,
        statement: dict[str, Any],
        collections: dict[str, bool],
    ) -> None:
        actions = statement.get("Action") or []
        actions = [actions] if isinstance(actions, str) else list(actions)
        resources = statement.get("Resource") or []
        resources = resources if isinstance(resources, list) else [resources]
        services = {str(a).split(":", 1)[0] for a in actions}
        if statement.get("Effect") == "Deny":
            self.r.add(
                "unmapped", lid, stype, "Policies (Deny)", f"{actions}: a Deny statement has no counterpart"
            )
            return
        if services == {"dynamodb"}:
            tables = set()
            for resource in resources:
                for target in _refs_in(resource):
                    if target in self.names.collections:
                        tables.add(self.names.collections[target])
            if not tables:
                self.r.add(
                    "unmapped", lid, stype, "Policies (DynamoDB)", f"{actions} on a table not in the template"
                )
                return
            writes = any(str(a).split(":", 1)[1] not in _DYNAMODB_READ for a in actions)
            for table in tables:
                collections[table] = collections.get(table, False) or writes
            return
        if services == {"sqs"}:
            own_dlq = _ref((self.props(lid).get("DeadLetterConfig") or {}).get("TargetArn"))
            targets = {t for r in resources for t in _refs_in(r) if t in self.names.queues} - {own_dlq}
            names = sorted(self.names.queues[t] for t in targets)
            if not targets:
                return  # its dead-letter queue: noted with the function
            if any(str(a).startswith("sqs:SendMessage") for a in actions):
                d = plan.description
                d["uses"] = sorted({*d.get("uses", []), "rabbitmq"})
                self.r.add(
                    "noted",
                    lid,
                    stype,
                    "Policies (SQS send)",
                    f"sends to {', '.join(names) or 'a queue'}: uses rabbitmq; AWS SDK calls need kfaas's SQS endpoint (AWS_ENDPOINT_URL_SQS)",
                )
            return  # receiving is what its queue source does
        if services == {"events"} and all(str(a) == "events:PutEvents" for a in actions):
            plan.description["publishes"] = True
            self.r.add(
                "noted",
                lid,
                stype,
                "Policies (EventBridge)",
                "publishes: true; PutEvents through the AWS SDK needs kfaas's EventBridge endpoint (AWS_ENDPOINT_URL_EVENTBRIDGE)",
            )
            return
        if services <= {"ses"}:
            d = plan.description
            d["uses"] = sorted({*d.get("uses", []), "smtp"})
            self.r.add(
                "noted",
                lid,
                stype,
                "Policies (SES)",
                "uses smtp; the AWS SDK's SendEmail needs kfaas's SES endpoint (AWS_ENDPOINT_URL_SES)",
            )
            return
        if services <= {"logs", "xray"}:
            return  # the function's output and trace context
        shown = ", ".join(sorted(map(str, actions))[:6]) + (" ..." if len(actions) > 6 else "")
        self.r.add(
            "unmapped",
            lid,
            stype,
            f"Policies ({', '.join(sorted(services))})",
            f"{shown}: no counterpart here",
        )

    # -- events -----------------------------------------------------------------------------------------

    def event_name(self, owner: str, resource_id: str, suffixes: tuple[str, ...] = ()) -> str:
        """The SAM event's name from the resource the translator made for it (``<Function><Event>``)."""
        name = (
            resource_id[len(owner) :]
            if resource_id.startswith(owner) and resource_id != owner
            else resource_id
        )
        for suffix in suffixes:
            if name.endswith(suffix) and name != suffix:
                name = name[: -len(suffix)]
        out = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()
        out = re.sub(r"[^-a-z0-9]+", "-", out).strip("-")[:63].rstrip("-")
        return out if _DNS.match(out) else "event"

    def event_source_mapping(self, lid: str) -> None:
        p = self.props(lid)
        self.done.add(lid)
        plan = self.fn_of(p.get("FunctionName"))
        if plan is None:
            self.r.add("unmapped", lid, self.types[lid], "FunctionName", "a function not in the template")
            return
        stype = self.sam_type(plan.logical_id)
        source_id = _ref(p.get("EventSourceArn"))
        source_type = self.types.get(source_id or "", "")
        event = self.event_name(plan.logical_id, lid)
        if source_type != "AWS::SQS::Queue":
            kind = {"AWS::Kinesis::Stream": "Kinesis", "AWS::DynamoDB::Table": "DynamoDB stream"}.get(
                source_type, "this event source"
            )
            self.r.add(
                "unmapped",
                plan.logical_id,
                stype,
                f"Events.{event} ({kind})",
                f"from {source_id or p.get('EventSourceArn')}: no stream source in kfaas yet (the RabbitMQ stream source is planned)",
            )
            return
        queue = self.names.queues[source_id or ""]
        source: dict[str, Any] = {"kind": "queue", "name": event, "queue": queue}
        if p.get("BatchSize") is not None:
            source["batchSize"] = int(p["BatchSize"])
        if p.get("MaximumBatchingWindowInSeconds"):
            source["batchWindow"] = _seconds(p["MaximumBatchingWindowInSeconds"])
        if "ReportBatchItemFailures" in (p.get("FunctionResponseTypes") or []):
            source["reportBatchItemFailures"] = True
        redrive = self.props(source_id or "").get("RedrivePolicy") or {}
        if redrive.get("maxReceiveCount"):
            dlq = _ref(redrive.get("deadLetterTargetArn")) or "its dead-letter queue"
            retry = max(0, int(redrive["maxReceiveCount"]) - 1)
            source["delivery"] = {"retry": retry, "deadLetter": True}
            self.r.add(
                "mapped",
                source_id or "",
                self.types[source_id or ""],
                "RedrivePolicy",
                f"maxReceiveCount {redrive['maxReceiveCount']} → {retry} retries, then the trigger's dead-letter queue "
                f"{plan.name}-{event} (kfaas dlq show {plan.name}-{event}) stands for {dlq}",
            )
            if dlq in self.names.queues:
                self.done.add(dlq)
        else:
            self.r.add(
                "noted",
                source_id or "",
                self.types[source_id or ""],
                "RedrivePolicy",
                "none: SQS redelivers until the retention period ends; kfaas retries 3 times, then dead-letters",
            )
        if p.get("Enabled") is False:
            self.r.add(
                "unmapped",
                plan.logical_id,
                stype,
                f"Events.{event}.Enabled",
                "false: a disabled source is not imported",
            )
            return
        for key in ("FilterCriteria", "ScalingConfig", "MaximumRetryAttempts", "BisectBatchOnFunctionError"):
            if key in p:
                self.r.add(
                    "unmapped",
                    plan.logical_id,
                    stype,
                    f"Events.{event}.{key}",
                    "no counterpart for a queue source",
                )
        plan.description.setdefault("sources", []).append(source)
        plan.consumes.append(f"the messages of the RabbitMQ queue {queue} as SQS records")
        detail = f"queue source {event} on {queue}" + "".join(
            f", {k} {source[k]}"
            for k in ("batchSize", "batchWindow", "reportBatchItemFailures")
            if k in source
        )
        self.r.add("mapped", plan.logical_id, stype, f"Events.{event} (SQS)", detail)

    def rule(self, lid: str, scheduler: bool = False) -> None:
        p = self.props(lid)
        self.done.add(lid)
        targets = (
            [p["Target"]] if scheduler and isinstance(p.get("Target"), dict) else list(p.get("Targets") or [])
        )
        for target in targets:
            arn = target.get("Arn")
            plan = self.fn_of(arn)
            machine = _ref(arn)
            if plan is not None:
                self._function_rule(lid, p, plan, target, scheduler)
            elif machine in self.machines:
                self._machine_rule(lid, p, self.machines[machine], scheduler)
            elif machine in self.names.statemachines:
                self.r.add(
                    "unmapped",
                    lid,
                    self.types[lid],
                    "Targets",
                    f"starts {machine}, which is not imported (see {machine})",
                )
            else:
                self.r.add(
                    "unmapped",
                    lid,
                    self.types[lid],
                    "Targets",
                    f"{arn!r}: a target that is no imported function or state machine",
                )

    def _function_rule(  # noqa: PLR0912
        self, lid: str, p: dict[str, Any], plan: FunctionPlan, target: dict[str, Any], scheduler: bool
    ) -> None:
        stype = self.sam_type(plan.logical_id)
        event = self.event_name(plan.logical_id, lid)
        expression = p.get("ScheduleExpression")
        data: Any = None
        if target.get("Input") is not None:
            import json

            raw = self.text(target["Input"])
            try:
                data = json.loads(raw) if raw is not None else None
            except ValueError:
                data = raw
        for key in ("InputPath", "InputTransformer", "RetryPolicy", "DeadLetterConfig"):
            if key in target:
                self.r.add(
                    "unmapped",
                    plan.logical_id,
                    stype,
                    f"Events.{event}.{key}",
                    "no counterpart for a broker trigger",
                )
        state = p.get("State")
        if state in ("DISABLED",) or p.get("Enabled") is False:
            self.r.add(
                "unmapped", plan.logical_id, stype, f"Events.{event}", "a disabled rule is not imported"
            )
            return
        if isinstance(expression, str):
            cron = rate_to_cron(expression)
            if cron is None or not _valid_cron(cron):
                self.r.add(
                    "unmapped",
                    plan.logical_id,
                    stype,
                    f"Events.{event} (Schedule)",
                    f"{expression}: not expressible as a five-field cron",
                )
                return
            source: dict[str, Any] = {"kind": "ping", "name": event, "schedule": cron}
            zone = p.get("ScheduleExpressionTimezone")
            if zone:
                source["timezone"] = str(zone)
            if data is not None:
                source["data"] = data
            plan.description.setdefault("sources", []).append(source)
            plan.consumes.append(f"a Scheduled Event on {cron}" + (f" ({zone})" if zone else ""))
            flex = (p.get("FlexibleTimeWindow") or {}).get("Mode")
            if flex and flex != "OFF":
                self.r.add(
                    "noted",
                    plan.logical_id,
                    stype,
                    f"Events.{event}.FlexibleTimeWindow",
                    "the ping source fires on time",
                )
            self.r.add(
                "mapped",
                plan.logical_id,
                stype,
                f"Events.{event} ({'ScheduleV2' if scheduler else 'Schedule'})",
                f"ping source {event}: {expression} → {cron!r}" + (f", time zone {zone}" if zone else ""),
            )
            return
        exact, left = _pattern_filter(p.get("EventPattern"))
        if not exact:
            self.r.add(
                "unmapped",
                plan.logical_id,
                stype,
                f"Events.{event} (EventBridgeRule)",
                f"no exact source or detail-type to filter on ({'; '.join(left)}): a trigger would take every event",
            )
            return
        trigger: dict[str, Any] = {
            "name": event,
            "filter": exact,
            "delivery": {"retry": 2, "deadLetter": True},
        }
        plan.description.setdefault("triggers", []).append(trigger)
        plan.consumes.append(f"broker events with {exact} (as EventBridge events)")
        self.r.add(
            "mapped",
            plan.logical_id,
            stype,
            f"Events.{event} (EventBridgeRule)",
            f"trigger {event}, filter {exact}, 2 retries (Lambda's async default)",
        )
        if left:
            self.r.add(
                "unmapped",
                plan.logical_id,
                stype,
                f"Events.{event}.Pattern",
                f"{'; '.join(left)}: only exact attribute matches filter here; the function gets the rest too",
            )
        bus = p.get("EventBusName")
        if bus and bus != "default":
            self.r.add(
                "noted",
                plan.logical_id,
                stype,
                f"Events.{event}.EventBusName",
                f"{bus}: one broker, 'default'",
            )

    def _machine_rule(self, lid: str, p: dict[str, Any], machine: MachinePlan, scheduler: bool) -> None:
        stype = "AWS::Serverless::StateMachine"
        event = self.event_name(machine.logical_id, lid, ("StepFunctionsTarget",))
        if p.get("ScheduleExpression") is not None:
            self.r.add(
                "unmapped",
                machine.logical_id,
                stype,
                f"Events.{event} (Schedule)",
                "a state machine starts on broker events only here: add a function with a ping source that starts it",
            )
            return
        exact, left = _pattern_filter(p.get("EventPattern"))
        if not exact:
            self.r.add(
                "unmapped",
                machine.logical_id,
                stype,
                f"Events.{event}",
                f"no exact attribute to start on ({'; '.join(left)})",
            )
            return
        machine.description.setdefault("starts", []).append({"name": event, "filter": exact})
        self.r.add(
            "mapped",
            machine.logical_id,
            stype,
            f"Events.{event} (EventBridgeRule)",
            f"starts {event}, filter {exact}",
        )
        if left:
            self.r.add(
                "unmapped",
                machine.logical_id,
                stype,
                f"Events.{event}.Pattern",
                f"{'; '.join(left)}: only exact attribute matches filter here; other events start it too",
            )

    def rest_api(self, lid: str, version: int) -> None:
        p = self.props(lid)
        self.done.add(lid)
        api_type = self.sam_type(lid)
        body = p.get("Body") if isinstance(p.get("Body"), dict) else None
        if body is None:
            self.r.add(
                "unmapped",
                lid,
                api_type,
                "DefinitionUri",
                "an OpenAPI document outside the template is not read: put it in DefinitionBody",
            )
            return
        stage = self._stage(lid)
        cors = body.get("x-amazon-apigateway-cors")
        if (
            body.get("securityDefinitions")
            or body.get("security")
            or (body.get("components") or {}).get("securitySchemes")
        ):
            self.r.add(
                "unmapped",
                lid,
                api_type,
                "Auth",
                "authorizers, API keys and IAM auth: the gateway verifies none of them",
            )
        for path, methods in (body.get("paths") or {}).items():
            if not isinstance(methods, dict):
                continue
            for method, op in methods.items():
                if not isinstance(op, dict):
                    continue
                integration = op.get("x-amazon-apigateway-integration") or {}
                if method == "options" and integration.get("type") == "mock":
                    cors = cors or integration
                    continue
                if method != "x-amazon-apigateway-any-method" and method not in _SWAGGER_METHODS:
                    continue
                uri = integration.get("uri")
                text = uri.get("Fn::Sub") if isinstance(uri, dict) else uri
                text = text[0] if isinstance(text, list) else text
                m = _INTEGRATION_URI.search(str(text or ""))
                plan = self.fn_of({"Ref": m.group(1)}) if m else None
                if plan is None:
                    self.r.add(
                        "unmapped",
                        lid,
                        api_type,
                        f"{method.upper()} {path}",
                        "an integration that is no imported Lambda function",
                    )
                    continue
                if op.get("security"):
                    self.r.add(
                        "unmapped",
                        plan.logical_id,
                        self.sam_type(plan.logical_id),
                        f"{method.upper()} {path} Auth",
                        "the gateway verifies no authorizer",
                    )
                self._route(plan, lid, path, method, version, integration, stage)
        if cors:
            origins = cors.get("allowOrigins") if isinstance(cors, dict) else None
            if origins is None and isinstance(cors, dict):
                params = ((cors.get("responses") or {}).get("default") or {}).get("responseParameters") or {}
                origin = params.get("method.response.header.Access-Control-Allow-Origin")
                origins = [str(origin).strip("'")] if origin else None
            shown = ", ".join(map(str, origins or ["?"]))
            self.r.add(
                "noted",
                lid,
                api_type,
                "Cors",
                f"allowed origins {shown}: the gateway's KFAAS_CORS_ORIGINS ({'* by default: nothing to set' if origins == ['*'] else 'set it to ' + shown}); CORS is one setting for every route",
            )

    def _stage(self, api: str) -> str | None:
        for sid, stage in self.cfn.items():
            if (
                stage.get("Type") in ("AWS::ApiGateway::Stage", "AWS::ApiGatewayV2::Stage")
                and _ref(self.props(sid).get("RestApiId") or self.props(sid).get("ApiId")) == api
            ):
                name = self.props(sid).get("StageName")
                for key in (
                    "MethodSettings",
                    "Variables",
                    "StageVariables",
                    "AccessLogSetting",
                    "DefaultRouteSettings",
                    "TracingEnabled",
                    "CacheClusterEnabled",
                ):
                    if self.props(sid).get(key):
                        self.r.add(
                            "unmapped",
                            api,
                            self.sam_type(api),
                            f"Stage.{key}",
                            "no counterpart at the gateway",
                        )
                return str(name) if isinstance(name, str) else None
        return None

    def _route(  # noqa: PLR0917
        self,
        plan: FunctionPlan,
        api: str,
        path: str,
        method: str,
        version: int,
        integration: dict[str, Any],
        stage: str | None,
    ) -> None:
        stype = self.sam_type(plan.logical_id)
        methods = _METHODS if method == "x-amazon-apigateway-any-method" else [method.upper()]
        payload = (
            "http"
            if version == 2 and str(integration.get("payloadFormatVersion", "2.0")) == "2.0"
            else "rest"
        )
        routes = plan.description.setdefault("routes", [])
        if path == "$default":
            self.r.add(
                "noted",
                plan.logical_id,
                stype,
                "Events (HttpApi $default)",
                "the default route takes every path on AWS; the gateway routes whole path templates only: it is / here, declare more routes for other paths",
            )
            path = "/"
        shown = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
        for route in routes:
            if route["path"] == path and route.get("api") == payload:
                route["methods"] = sorted(
                    {*route["methods"], *methods},
                    key=_METHODS.index if all(m in _METHODS for m in methods) else str,
                )
                break
        else:
            routes.append({"path": path, "methods": list(methods), "api": payload})
        if stage and stage not in ("$default", "Stage") and payload == "rest":
            plan.description.setdefault("lambda", {})["stage"] = stage
        greedy = "+}" in path
        plan.consumes.append(
            f"{shown} {path} ({'HTTP API, payload 2.0' if payload == 'http' else 'REST API, payload 1.0'})"
        )
        self.r.add(
            "noted" if greedy else "mapped",
            plan.logical_id,
            stype,
            f"Events ({'HttpApi' if version == 2 else 'Api'} {shown} {path})",
            f"route {shown} {path}, api {payload}"
            + (", greedy: matched by the function, the gateway routes one segment" if greedy else "")
            + (f", stage {stage}" if stage and payload == "rest" and stage != "Stage" else ""),
        )

    def event_invoke_config(self, lid: str) -> None:
        p = self.props(lid)
        self.done.add(lid)
        plan = self.fn_of(p.get("FunctionName"))
        if plan is None:
            return
        stype = self.sam_type(plan.logical_id)
        retries = p.get("MaximumRetryAttempts")
        for trigger in plan.description.get("triggers", []):
            if retries is not None:
                trigger["delivery"]["retry"] = int(retries)
        pings = [s for s in plan.description.get("sources", []) if s["kind"] == "ping"]
        if retries is not None:
            for ping in pings:  # the trigger a ping source feeds, written out to carry the delivery
                plan.description.setdefault("triggers", []).append(
                    {
                        "name": ping["name"],
                        "filter": {"type": PING_EVENT_TYPE},
                        "delivery": {"retry": int(retries), "deadLetter": True},
                    }
                )
            self.r.add(
                "mapped",
                plan.logical_id,
                stype,
                "EventInvokeConfig.MaximumRetryAttempts",
                f"{retries} retries on its broker triggers",
            )
        if p.get("MaximumEventAgeInSeconds"):
            self.r.add(
                "unmapped",
                plan.logical_id,
                stype,
                "EventInvokeConfig.MaximumEventAgeInSeconds",
                "events are not dropped by age here",
            )
        destinations = p.get("DestinationConfig") or {}
        success = (destinations.get("OnSuccess") or {}).get("Destination")
        if success is not None:
            target = _ref(success)
            is_bus = (
                "event-bus" in str(self.text(success) or "")
                or self.types.get(target or "") == "AWS::Events::EventBus"
            )
            if is_bus:
                plan.description.setdefault("lambda", {})["reply"] = {
                    "type": ASYNC_SUCCESS_TYPE,
                    "source": "lambda",
                }
                # the PutEvents statement SAM added is the destination's: kfaas publishes the reply itself
                plan.description.pop("publishes", None)
                self.r.items = [
                    i
                    for i in self.r.items
                    if not (i.resource == plan.logical_id and i.what == "Policies (EventBridge)")
                ]
                self.r.add(
                    "mapped",
                    plan.logical_id,
                    stype,
                    "EventInvokeConfig.OnSuccess",
                    f"lambda.reply: the result as a CloudEvent of type {ASYNC_SUCCESS_TYPE!r}",
                )
            else:
                self.r.add(
                    "unmapped",
                    plan.logical_id,
                    stype,
                    "EventInvokeConfig.OnSuccess",
                    f"{target or success}: only an EventBridge destination maps (to a reply event)",
                )
        failure = (destinations.get("OnFailure") or {}).get("Destination")
        if failure is not None:
            self.r.add(
                "noted",
                plan.logical_id,
                stype,
                "EventInvokeConfig.OnFailure",
                f"{_ref(failure) or failure}: failed events land in each trigger's dead-letter queue (kfaas dlq)",
            )

    def s3_notifications(self, lid: str) -> None:
        config = self.props(lid).get("NotificationConfiguration") or {}
        for entry in config.get("LambdaConfigurations") or []:
            plan = self.fn_of(entry.get("Function"))
            if plan is None:
                continue
            self.r.add(
                "unmapped",
                plan.logical_id,
                self.sam_type(plan.logical_id),
                f"Events ({entry.get('Event')} on {lid})",
                "S3 events: no object-store (bucket) source in kfaas yet",
            )

    # -- state machines ---------------------------------------------------------------------------------

    def state_machine(self, lid: str) -> None:
        self.done.add(lid)
        original = self.t.sam_resource(lid)
        stype = str(original.get("Type") or self.types[lid])
        props = original.get("Properties") or {}
        name = self.names.statemachines[lid]
        definition: Any = props.get("Definition")
        definition_file: Path | None = None
        if definition is None and isinstance(props.get("DefinitionUri"), str):
            definition_file = (self.t.base / props["DefinitionUri"]).resolve()
            if not definition_file.is_file():
                self.r.add(
                    "unmapped",
                    lid,
                    stype,
                    "DefinitionUri",
                    f"{props['DefinitionUri']}: not found beside the template",
                )
                return
            from kfaas.aws.sam._template import parse_file

            definition = parse_file(definition_file)
        elif definition is None and props.get("DefinitionString") is not None:
            definition = props["DefinitionString"]
            if isinstance(definition, str):
                import json

                definition = json.loads(definition)
        if not isinstance(definition, dict):
            self.r.add(
                "unmapped",
                lid,
                stype,
                "Definition",
                "no definition kfaas can read (Definition, DefinitionUri or a JSON DefinitionString)",
            )
            return
        unresolved: list[str] = []
        functions = sorted(set(_tasks(definition, "", unresolved)))
        if unresolved:
            self.r.add(
                "unmapped",
                lid,
                stype,
                "state machine",
                f"Tasks {', '.join(unresolved)} call AWS services or Lambda through an integration ARN; "
                "kfaas state machines run Tasks on kfaas functions only (Resource: !GetAtt <Function>.Arn)",
            )
            return
        snippet = {lid: {k: v for k, v in original.items()}}
        machine = MachinePlan(
            lid,
            name,
            {
                "description": f"{lid}, imported from SAM",
                "definition": "step-functions.yaml",
                "resource": lid,
            },
            snippet,
            definition_file,
            functions,
        )
        self.machines[lid] = machine
        self.r.add(
            "mapped",
            lid,
            stype,
            "state machine",
            f"statemachines/{name}: the definition unchanged, Tasks on {', '.join(functions)}",
        )
        imported = set(self.names.functions.values())
        absent = sorted(set(functions) - imported - self.known_functions)
        if absent:
            self.r.add(
                "noted",
                lid,
                stype,
                "Tasks",
                f"invoke {', '.join(absent)}, which the template does not define: add those function folders before rendering",
            )
        for key in (
            "Role",
            "Policies",
            "Logging",
            "Tracing",
            "PermissionsBoundary",
            "Type",
            "Name",
            "RolePath",
        ):
            if props.get(key):
                why = {
                    "Type": "one kind of execution here (durable, Standard-like)",
                    "Name": f"the state machine is {name} here",
                }.get(
                    key, "no counterpart: the engine runs Tasks through the broker with its own database user"
                )
                self.r.add(
                    "noted" if key in ("Type", "Name") else "unmapped",
                    lid,
                    stype,
                    key,
                    f"{props[key] if key in ('Type', 'Name') else ''} {why}".strip(),
                )
        for role_id, res in self.cfn.items():  # the roles the translator made for it
            if (
                res.get("Type") == "AWS::IAM::Role"
                and role_id.startswith(lid)
                and role_id not in (self.t.sam.get("Resources") or {})
            ):
                self.done.add(role_id)

    # -- everything -------------------------------------------------------------------------------------

    def other(self, lid: str) -> None:  # noqa: PLR0912 (one branch per SAM property or event kind)
        type_ = self.types[lid]
        stype = self.sam_type(lid)
        if type_ == "AWS::DynamoDB::Table":
            p = self.props(lid)
            keys = [k.get("AttributeName") for k in p.get("KeySchema") or []]
            collection = self.names.collections[lid]
            users = sorted(
                plan.name
                for plan in self.plans.values()
                if collection in ((plan.description.get("database") or {}).get("collections") or [])
            )
            self.r.add(
                "mapped",
                lid,
                stype,
                "table",
                f"MongoDB collection {collection} (key {', '.join(map(str, keys))}), used by {', '.join(users) or 'no function'}",
            )
            index = "{" + ", ".join(f"{k}: 1" for k in self.table_keys.get(collection, [])) + "}"
            self.r.add(
                "mapped",
                lid,
                stype,
                "KeySchema",
                f"{', '.join(map(str, keys))}: the unique index {index} on {collection}, created with the "
                "database users (compose, k8s, the chart)",
            )
            for key in (
                "GlobalSecondaryIndexes",
                "LocalSecondaryIndexes",
                "StreamSpecification",
                "TimeToLiveSpecification",
                "SSESpecification",
                "PointInTimeRecoverySpecification",
            ):
                if p.get(key):
                    self.r.add(
                        "unmapped",
                        lid,
                        stype,
                        key,
                        "no counterpart: add MongoDB indexes (or a change stream, a TTL index) by hand",
                    )
            for key in ("BillingMode", "ProvisionedThroughput"):
                if p.get(key):
                    self.r.add("noted", lid, stype, key, "capacity settings do not apply to MongoDB")
            return
        if type_ == "AWS::SQS::Queue":
            p = self.props(lid)
            queue = self.names.queues[lid]
            consumers = sorted(
                plan.name
                for plan in self.plans.values()
                for s in plan.description.get("sources", [])
                if s.get("queue") == queue
            )
            if consumers:
                self.r.add(
                    "mapped",
                    lid,
                    stype,
                    "queue",
                    f"RabbitMQ quorum queue {queue}, consumed by {', '.join(consumers)}",
                )
            elif lid in self.done:
                self.r.add(
                    "mapped",
                    lid,
                    stype,
                    "queue",
                    f"{queue}: a dead-letter queue; kfaas keeps dead letters per trigger (kfaas dlq)",
                )
                return
            else:
                self.r.add(
                    "noted",
                    lid,
                    stype,
                    "queue",
                    f"RabbitMQ queue {queue}: nothing here consumes it; its producers declare it (durable, quorum)",
                )
            if p.get("FifoQueue"):
                self.r.add(
                    "noted",
                    lid,
                    stype,
                    "FifoQueue",
                    "message groups are not kept apart; a source with parallelism 1 and batchSize 1 keeps the order",
                )
            skipped = sorted(set(p) - {"QueueName", "RedrivePolicy", "FifoQueue", "Tags"})
            if skipped:
                self.r.add(
                    "unmapped", lid, stype, ", ".join(skipped), "no counterpart on a RabbitMQ quorum queue"
                )
            return
        if type_ in _PLUMBING:
            return
        if type_ == "AWS::IAM::Role" and lid not in (self.t.sam.get("Resources") or {}):
            return  # made by the translator for a rule or a state machine that is reported on its own
        why = {
            "AWS::S3::Bucket": "no object store in kfaas yet (a bucket source is planned)",
            "AWS::Kinesis::Stream": "no stream source in kfaas yet (the RabbitMQ stream source is planned)",
            "AWS::SNS::Topic": "no SNS: publish CloudEvents to the broker instead",
            "AWS::Logs::LogGroup": "logs are the containers' output",
            "AWS::IAM::Role": "IAM has no counterpart: each function has its own database role",
            "AWS::IAM::Policy": "IAM has no counterpart",
        }.get(type_, "a resource of a type kfaas does not import")
        self.r.add("unmapped", lid, stype, "resource", why)


def _refs_in(value: Any) -> list[str]:
    """Every logical id a value refers to (Ref, GetAtt, ${X} in Sub), at any depth."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.append(arg)
            elif key == "Fn::GetAtt":
                got = _ref({key: arg})
                if got:
                    found.append(got)
            elif key == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) else arg
                if isinstance(text, str):
                    found += [m.split(".")[0] for m in re.findall(r"\$\{([^}!]*)\}", text)]
                if isinstance(arg, list) and len(arg) > 1:
                    found += _refs_in(arg[1])
            else:
                found += _refs_in(arg)
    elif isinstance(value, list):
        for item in value:
            found += _refs_in(item)
    return found


def _tasks(block: Any, where: str, unresolved: list[str]) -> list[str]:
    """The functions the Task states of ``block`` invoke; the states that invoke none go to ``unresolved``."""
    found: list[str] = []
    if not isinstance(block, dict) or not isinstance(block.get("States"), dict):
        return found
    for name, state in block["States"].items():
        if not isinstance(state, dict):
            continue
        if state.get("Type") == "Task":
            resource = state.get("Resource")
            fn = function_name(resource)
            if fn is None or (isinstance(resource, str) and resource.startswith("arn:aws:states:::")):
                unresolved.append(f"{where}{name}")
            else:
                found.append(fn)
        for i, branch in enumerate(state.get("Branches") or []):
            found += _tasks(branch, f"{where}{name}.Branches[{i}].", unresolved)
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                found += _tasks(state[key], f"{where}{name}.{key}.", unresolved)
    return found


def plan(template: Template, report: Report, region: str, account: str, known_functions: set[str]) -> Plan:  # noqa: PLR0912 (one branch per SAM property or event kind)
    """Map ``template.cfn`` (translated) to function and state machine plans, filling ``report``."""
    m = _Mapper(template, report, region, account, known_functions)
    m.collect_names()
    order = {
        "AWS::Lambda::Function": 0,
        "AWS::StepFunctions::StateMachine": 1,
        "AWS::Lambda::EventSourceMapping": 2,
        "AWS::Events::Rule": 2,
        "AWS::Scheduler::Schedule": 2,
        "AWS::ApiGateway::RestApi": 2,
        "AWS::ApiGatewayV2::Api": 2,
        "AWS::Lambda::EventInvokeConfig": 3,
    }
    for lid in sorted(m.cfn, key=lambda k: (order.get(m.types[k], 4), k)):
        type_ = m.types[lid]
        if type_ == "AWS::Lambda::Function":
            m.function(lid)
        elif type_ == "AWS::StepFunctions::StateMachine":
            m.state_machine(lid)
        elif type_ == "AWS::Lambda::EventSourceMapping":
            m.event_source_mapping(lid)
        elif type_ == "AWS::Events::Rule":
            m.rule(lid)
        elif type_ == "AWS::Scheduler::Schedule":
            m.rule(lid, scheduler=True)
        elif type_ == "AWS::ApiGateway::RestApi":
            m.rest_api(lid, 1)
        elif type_ == "AWS::ApiGatewayV2::Api":
            m.rest_api(lid, 2)
        elif type_ == "AWS::Lambda::EventInvokeConfig":
            m.event_invoke_config(lid)
        elif type_ == "AWS::S3::Bucket":
            m.s3_notifications(lid)
            m.other(lid)
        elif lid not in m.done or type_ in ("AWS::SQS::Queue", "AWS::DynamoDB::Table"):
            m.other(lid)
    for key in ("Outputs", "Conditions", "Mappings"):
        if template.sam.get(key):
            report.add(
                "noted",
                key,
                "template",
                key,
                "not imported: a function's URL is the gateway's, its settings are in its description",
            )
    for fplan in m.plans.values():
        fplan.description.setdefault("lambda", {}).update({"region": region, "account": account})
    return Plan(list(m.plans.values()), list(m.machines.values()), report)
