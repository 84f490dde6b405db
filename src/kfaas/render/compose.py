"""``docker-compose.yml`` and ``.env.example`` from the function descriptions.

The dev stack: MongoDB (auth on, one user per function created by the one-shot ``mongodb-users`` service),
RabbitMQ with its management UI, Mailpit, the dev broker, the API gateway, one container per function and,
when a function is ``kind: lambda``, the AWS API endpoints (``aws``: EventBridge, SQS, SES for the handlers'
AWS SDKs, which get ``AWS_ENDPOINT_URL_*`` and the access key of ``.env``); versitygw (the S3 object store,
its event records to RabbitMQ) when a function has a bucket source or uses S3, with the buckets the
descriptions name.
Every service has a healthcheck and waits for what it needs with ``condition: service_healthy``. Passwords
come from ``.env`` and a missing one stops ``docker compose`` before anything starts (``${VAR:?...}``).
Host ports bind to 127.0.0.1 only.
"""

from __future__ import annotations

from typing import Any

from kfaas.render import (
    MONGODB_DATABASE,
    PLATFORM_IMAGE,
    dump_yaml,
    env_suffix,
    header,
    image,
    lambda_runtime_env,
    mongodb_functions,
    mongodb_users_script,
    password_env,
)
from kfaas.spec import DEFAULT_BROKER, S3_EVENTS_EXCHANGE, AppSpec, BucketSource, FunctionSpec

__all__ = ["render_compose"]

# Pinned tags of the backing services (the same majors as the k8s manifests).
MONGO_IMAGE = "mongo:7.0.14"
RABBITMQ_IMAGE = "rabbitmq:3.13.7-management"
MAILPIT_IMAGE = "axllent/mailpit:v1.21.8"
VERSITYGW_IMAGE = "ghcr.io/versity/versitygw:v1.8.0"
S3_PORT = 7070

PORT = 8080
AWS_SERVICE = "aws"  # kfaas aws-endpoints
AWS_SDK_SERVICES = ("EVENTBRIDGE", "SQS", "SES", "SESV2")  # AWS_ENDPOINT_URL_<service id> of the SDKs
FUNCTION_URL_TEMPLATE = "http://{name}:8080"
_REQUIRED = "set it in .env (cp .env.example .env)"


def _required(var: str) -> str:
    return f"${{{var}:?{_REQUIRED}}}"


def _http_check(path: str = "/health/readiness") -> dict[str, Any]:
    probe = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{PORT}{path}', timeout=2)"  # non-2xx raises: exit 1
    )
    return {
        "test": ["CMD", "python", "-c", probe],
        "interval": "5s",
        "timeout": "3s",
        "retries": 12,
        "start_period": "5s",
    }


def _mongodb_secret_var(fn: FunctionSpec) -> str:
    return f"MONGO_PASSWORD_{env_suffix(fn.name)}"


def _secret_var(fn: FunctionSpec, key: str) -> str:
    return f"{env_suffix(fn.name)}_{key}"


def _mem_limit(memory: str) -> str:
    return memory.replace("Mi", "m").replace("Gi", "g")


def _cpus(cpu: str) -> float:
    return int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)


def _function_env(fn: FunctionSpec) -> dict[str, str]:
    if fn.kind == "lambda":
        env: dict[str, str] = {"KFAAS_FUNCTION": fn.name, "FUNCTION_SIGNATURE_TYPE": "lambda"}
        if fn.lambda_image:  # kfaas serve beside the image: the Runtime API; the services are the image's
            env["KFAAS_DESCRIPTION"] = f"/app/functions/{fn.name}/function.yaml"
            env["PORT"] = str(PORT)
            return env
        env["KFAAS_DESCRIPTION"] = "/app/function/function.yaml"
        env["PORT"] = str(PORT)
        env.update(_aws_sdk_env(fn))
        env.update(_service_env(fn))
        return env
    env = {
        "KFAAS_FUNCTION": fn.name,
        "FUNCTION_TARGET": fn.target,
        "FUNCTION_SOURCE": f"/app/function/{fn.source}",
    }
    if fn.kind == "cloudevent":
        env["FUNCTION_SIGNATURE_TYPE"] = "cloudevent"  # http: detected (FastAPI apps are served as asgi)
    env["KFAAS_TIMEOUT"] = str(fn.timeout)  # the runtime ends an invocation there (ctx.once leases too)
    env["PORT"] = str(PORT)
    env.update(_service_env(fn))
    return env


def _aws_sdk_env(fn: FunctionSpec) -> dict[str, str]:
    """What an unchanged AWS SDK in a lambda handler reads: kfaas's endpoints, their access key, the region."""
    env = {f"AWS_ENDPOINT_URL_{s}": f"http://{AWS_SERVICE}:{PORT}" for s in AWS_SDK_SERVICES}
    env["AWS_ACCESS_KEY_ID"] = _required("KFAAS_AWS_ACCESS_KEY_ID")
    env["AWS_SECRET_ACCESS_KEY"] = _required("KFAAS_AWS_SECRET_ACCESS_KEY")
    env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = fn.lambda_.region
    return env


def _service_env(fn: FunctionSpec) -> dict[str, str]:
    env: dict[str, str] = {}
    if "mongodb" in fn.uses:
        password = _required(_mongodb_secret_var(fn))
        env["MONGODB_URL"] = (
            f"mongodb://{fn.name}:{password}@mongodb:27017/{MONGODB_DATABASE}?authSource={MONGODB_DATABASE}"
        )
        env["MONGODB_DATABASE"] = MONGODB_DATABASE
    if "rabbitmq" in fn.uses:
        env["AMQP_URL"] = f"amqp://kfaas:{_required('RABBITMQ_PASSWORD')}@rabbitmq:5672/"
    if "smtp" in fn.uses:
        env["SMTP_HOST"] = "mailpit"
        env["SMTP_PORT"] = "1025"
        env["MAIL_FROM"] = "${MAIL_FROM:-no-reply@kfaas.local}"
    if "s3" in fn.uses:
        env["S3_ENDPOINT_URL"] = f"http://versitygw:{S3_PORT}"
        env["AWS_ACCESS_KEY_ID"] = _required("S3_ACCESS_KEY")
        env["AWS_SECRET_ACCESS_KEY"] = _required("S3_SECRET_KEY")
        env["AWS_REGION"] = "us-east-1"
    if fn.publishes:
        env["K_SINK"] = f"http://broker:{PORT}/{DEFAULT_BROKER}"
    env.update(fn.env)
    for key in fn.secrets:
        env[key] = _required(_secret_var(fn, key))
    return env


def _depends(fn: FunctionSpec) -> dict[str, dict[str, str]]:
    depends: dict[str, dict[str, str]] = {}
    if "mongodb" in fn.uses:
        depends["mongodb-users"] = {"condition": "service_completed_successfully"}
    if "rabbitmq" in fn.uses:
        depends["rabbitmq"] = {"condition": "service_healthy"}
    if "smtp" in fn.uses:
        depends["mailpit"] = {"condition": "service_healthy"}
    if fn.publishes:
        depends["broker"] = {"condition": "service_healthy"}
    if fn.kind == "lambda":
        depends[AWS_SERVICE] = {"condition": "service_healthy"}
    if "s3" in fn.uses:
        depends["versitygw"] = {"condition": "service_healthy"}
    return depends


def _uses_s3(app: AppSpec) -> bool:
    return any("s3" in fn.uses or _bucket_sources(fn) for fn in app.functions)


def _bucket_sources(fn: FunctionSpec) -> list[BucketSource]:
    return [s for s in fn.sources if isinstance(s, BucketSource)]


def _buckets(app: AppSpec) -> list[str]:
    """The buckets the descriptions name: each bucket source's, and a THUMBNAILS_BUCKET-style env value
    ending in _BUCKET of a function that uses S3."""
    names = {s.bucket for fn in app.functions for s in _bucket_sources(fn)}
    names |= {
        v for fn in app.functions if "s3" in fn.uses for k, v in fn.env.items() if k.endswith("_BUCKET")
    }
    return sorted(names)


def _store_services(app: AppSpec) -> dict[str, Any]:
    """versitygw on a volume, publishing every object change to the exchange the bucket sources bind to.

    It starts after the broker, whose bucket sources declare the exchange: versitygw v1.8.0 publishes a test
    event at start, and a publish to a missing exchange closes its channel for good. It does not reconnect
    to RabbitMQ either (docs/object-storage.md): ``restart: unless-stopped`` and the dependency on RabbitMQ
    are all compose can do.
    """
    exchanges = sorted(
        {s.exchange for fn in app.functions for s in _bucket_sources(fn)} or {S3_EVENTS_EXCHANGE}
    )
    # with the posix backend a bucket is a directory of /data: the buckets the descriptions name are made
    # so before the server starts (single-account mode, as here, needs nothing more)
    folders = " ".join(f"/data/{name}" for name in _buckets(app))
    store: dict[str, Any] = {
        "image": VERSITYGW_IMAGE,
        "entrypoint": [
            "sh",
            "-c",
            f'{"mkdir -p " + folders + " && " if folders else ""}exec /usr/local/bin/docker-entrypoint.sh "$$@"',
            "--",
        ],
        "command": [
            "--port",
            f":{S3_PORT}",
            "--health",
            "/health",
            "--event-rabbitmq-url",
            f"amqp://kfaas:{_required('RABBITMQ_PASSWORD')}@rabbitmq:5672/",
            "--event-rabbitmq-exchange",
            exchanges[0],
            "posix",
            "/data",
        ],
        "environment": {
            "ROOT_ACCESS_KEY_ID": _required("S3_ACCESS_KEY"),
            "ROOT_SECRET_ACCESS_KEY": _required("S3_SECRET_KEY"),
        },
        "ports": [f"127.0.0.1:{S3_PORT}:{S3_PORT}"],
        "volumes": ["s3-data:/data"],
        # the image is Alpine's: BusyBox wget asks the health path (no credentials needed)
        "healthcheck": {
            "test": ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{S3_PORT}/health"],
            "interval": "5s",
            "timeout": "3s",
            "retries": 12,
        },
        "depends_on": {"broker": {"condition": "service_healthy"}},
        "restart": "unless-stopped",
    }
    return {"versitygw": store}


def lambda_image_service(fn: FunctionSpec) -> dict[str, Any]:
    """A Lambda container image, unchanged, in the network of kfaas's container (<name>): the Runtime API is
    on its 127.0.0.1, as in a Knative pod."""
    assert fn.image is not None
    service: dict[str, Any] = {"image": fn.image}
    if fn.handler:
        service["command"] = [fn.handler]  # SAM's ImageConfig.Command (the image's CMD)
    # compose interpolates $NAME: the literal $ of $LATEST is written $$
    env = {k: v.replace("$", "$$") for k, v in lambda_runtime_env(fn).items()}
    env.update(_aws_sdk_env(fn))
    env.update(_service_env(fn))
    service.update(
        {
            "environment": env,
            "network_mode": f"service:{fn.name}",
            "read_only": True,
            "tmpfs": ["/tmp"],
            "user": "10001:10001",
            "mem_limit": _mem_limit(fn.memory),
            "cpus": _cpus(fn.cpu),
            "depends_on": {fn.name: {"condition": "service_started"}, **_depends(fn)},
            "restart": "unless-stopped",
        }
    )
    return service


def _function_service(fn: FunctionSpec, app: AppSpec) -> dict[str, Any]:
    if fn.lambda_image:
        return {
            **_platform_service("serve", app),
            "command": ["serve"],
            "environment": _function_env(fn),
        }
    depends = _depends(fn)
    service: dict[str, Any] = {
        "build": {"context": ".", "dockerfile": "Dockerfile.base", "args": {"FUNCTION": fn.name}},
        "image": image(fn.name),
        "environment": _function_env(fn),
        "read_only": True,
        "tmpfs": ["/tmp"],
        "mem_limit": _mem_limit(fn.memory),
        "cpus": _cpus(fn.cpu),
        "healthcheck": _http_check(),
        "restart": "unless-stopped",
    }
    if depends:
        service["depends_on"] = depends
    return service


def _platform_service(command: str, app: AppSpec) -> dict[str, Any]:
    return {
        "build": {"context": ".", "dockerfile": "Dockerfile.base", "target": "platform"},
        "image": image(PLATFORM_IMAGE),
        "command": [command, "--functions", "/app/functions"],
        "environment": {
            "PORT": str(PORT),
            "KFAAS_FUNCTION_URL_TEMPLATE": FUNCTION_URL_TEMPLATE,
        },
        "read_only": True,
        "tmpfs": ["/tmp"],
        "healthcheck": _http_check(),
        "restart": "unless-stopped",
    }


def _services(app: AppSpec) -> dict[str, Any]:
    users = mongodb_functions(app)
    services: dict[str, Any] = {
        "mongodb": {
            "image": MONGO_IMAGE,
            "environment": {
                "MONGO_INITDB_ROOT_USERNAME": "root",
                "MONGO_INITDB_ROOT_PASSWORD": _required("MONGO_ROOT_PASSWORD"),
            },
            "volumes": ["mongodb-data:/data/db"],
            "healthcheck": {
                "test": ["CMD", "mongosh", "--quiet", "--eval", "db.adminCommand('ping').ok"],
                "interval": "5s",
                "timeout": "5s",
                "retries": 20,
                "start_period": "10s",
            },
            "restart": "unless-stopped",
        },
        # One-shot: creates/updates one role and one user per function, then exits 0.
        "mongodb-users": {
            "image": MONGO_IMAGE,
            "entrypoint": [
                "sh",
                "-c",
                'exec mongosh --quiet "$$MONGODB_ROOT_URL" --file /kfaas/mongodb-users.js',
            ],
            "environment": {
                "MONGODB_ROOT_URL": f"mongodb://root:{_required('MONGO_ROOT_PASSWORD')}@mongodb:27017/admin",
                **{password_env(fn): _required(_mongodb_secret_var(fn)) for fn in users},
            },
            "configs": [{"source": "mongodb-users", "target": "/kfaas/mongodb-users.js"}],
            "depends_on": {"mongodb": {"condition": "service_healthy"}},
            "restart": "no",
        },
        "rabbitmq": {
            "image": RABBITMQ_IMAGE,
            "environment": {
                "RABBITMQ_DEFAULT_USER": "kfaas",
                "RABBITMQ_DEFAULT_PASS": _required("RABBITMQ_PASSWORD"),
            },
            "ports": ["127.0.0.1:5672:5672", "127.0.0.1:15672:15672"],
            "volumes": ["rabbitmq-data:/var/lib/rabbitmq"],
            "healthcheck": {
                "test": ["CMD", "rabbitmq-diagnostics", "-q", "ping"],
                "interval": "10s",
                "timeout": "10s",
                "retries": 12,
                "start_period": "20s",
            },
            "restart": "unless-stopped",
        },
        "mailpit": {
            "image": MAILPIT_IMAGE,
            "ports": ["127.0.0.1:8025:8025"],
            "healthcheck": {
                "test": ["CMD", "/mailpit", "readyz"],
                "interval": "5s",
                "timeout": "3s",
                "retries": 12,
            },
            "restart": "unless-stopped",
        },
    }
    broker = _platform_service("broker", app)
    broker["environment"]["AMQP_URL"] = f"amqp://kfaas:{_required('RABBITMQ_PASSWORD')}@rabbitmq:5672/"
    broker["depends_on"] = {"rabbitmq": {"condition": "service_healthy"}}
    services["broker"] = broker

    gateway = _platform_service("gateway", app)
    gateway["environment"]["KFAAS_CORS_ORIGINS"] = "*"
    gateway["ports"] = [f"127.0.0.1:{PORT}:{PORT}"]
    http_functions = [fn.name for fn in app.functions if fn.serves_http]
    if http_functions:
        gateway["depends_on"] = {name: {"condition": "service_healthy"} for name in http_functions}
    services["gateway"] = gateway

    if _uses_s3(app):
        services.update(_store_services(app))
    if app.engine is not None:
        services[app.engine.name] = _engine_service(app)
    if any(fn.kind == "lambda" for fn in app.functions):
        services[AWS_SERVICE] = _aws_service(app)
    for fn in app.functions:
        services[fn.name] = _function_service(fn, app)
        if fn.lambda_image:
            services[f"{fn.name}-runtime"] = lambda_image_service(fn)
    for consumer, fn, _ in app.streams:
        services[consumer.name] = _stream_service(consumer, fn, app)
    return services


def _stream_service(consumer: FunctionSpec, fn: FunctionSpec, app: AppSpec) -> dict[str, Any]:
    """The consumer of a stream source (``kfaas stream run``): one per stream, as the order needs."""
    service = _platform_service("stream", app)
    service["command"] = ["stream", "--functions", "/app/functions", "run", consumer.name]
    service["environment"].update(_service_env(consumer))
    service["depends_on"] = {**_depends(consumer), fn.name: {"condition": "service_healthy"}}
    return service


def _engine_service(app: AppSpec) -> dict[str, Any]:
    """The state machine engine (``kfaas saga``): executions in MongoDB, task requests to the broker."""
    assert app.engine is not None
    engine = _platform_service("saga", app)
    password = _required(_mongodb_secret_var(app.engine))
    engine["environment"].update(
        MONGODB_URL=f"mongodb://{app.engine.name}:{password}@mongodb:27017/{MONGODB_DATABASE}?authSource={MONGODB_DATABASE}",
        MONGODB_DATABASE=MONGODB_DATABASE,
        K_SINK=f"http://broker:{PORT}/{DEFAULT_BROKER}",
    )
    del engine["environment"]["KFAAS_FUNCTION_URL_TEMPLATE"]
    # the executions API (StartExecution and the rest) for `curl`; the gateway does not route to it
    engine["ports"] = [f"127.0.0.1:8083:{PORT}"]
    engine["depends_on"] = {
        "mongodb-users": {"condition": "service_completed_successfully"},
        "broker": {"condition": "service_healthy"},
    }
    return engine


def _aws_service(app: AppSpec) -> dict[str, Any]:
    """``kfaas aws-endpoints``: PutEvents to the broker, SQS to RabbitMQ, SES to Mailpit, SigV4 checked."""
    aws = _platform_service("aws-endpoints", app)
    aws["command"] = ["aws-endpoints"]
    environment = aws["environment"]
    del environment["KFAAS_FUNCTION_URL_TEMPLATE"]
    environment.update(
        KFAAS_BROKER_URL=f"http://broker:{PORT}/{DEFAULT_BROKER}",
        AMQP_URL=f"amqp://kfaas:{_required('RABBITMQ_PASSWORD')}@rabbitmq:5672/",
        SMTP_HOST="mailpit",
        SMTP_PORT="1025",
        KFAAS_AWS_ACCESS_KEY_ID=_required("KFAAS_AWS_ACCESS_KEY_ID"),
        KFAAS_AWS_SECRET_ACCESS_KEY=_required("KFAAS_AWS_SECRET_ACCESS_KEY"),
    )
    # for SDKs on this machine too (scripts, tests): AWS_ENDPOINT_URL_SQS=http://127.0.0.1:8084
    aws["ports"] = [f"127.0.0.1:8084:{PORT}"]
    aws["depends_on"] = {
        "rabbitmq": {"condition": "service_healthy"},
        "mailpit": {"condition": "service_healthy"},
        "broker": {"condition": "service_healthy"},
    }
    return aws


def _env_example(app: AppSpec) -> str:
    lines = [
        header("compose"),
        "# Copy to .env before `docker compose up --build`:  cp .env.example .env",
        "# DEV-ONLY values. Change every password before the stack is reachable from anywhere else.",
        "# Passwords go into URLs: use letters, digits, '-' and '_' only.",
        "",
        "MONGO_ROOT_PASSWORD=dev-only-mongo-root",
        "RABBITMQ_PASSWORD=dev-only-rabbitmq",
        "MAIL_FROM=no-reply@kfaas.local",
        *(["S3_ACCESS_KEY=dev-only-s3", "S3_SECRET_KEY=dev-only-s3-secret"] if _uses_s3(app) else []),
        "",
        "# One MongoDB user per function (role and collections from its function.yaml `database`)",
    ]
    lines += [f"{_mongodb_secret_var(fn)}=dev-only-{fn.name}" for fn in mongodb_functions(app)]
    if any(fn.kind == "lambda" for fn in app.functions):
        lines += [
            "",
            "# The access key of the AWS API endpoints (service aws): the lambda handlers' AWS SDKs sign with it",
            "KFAAS_AWS_ACCESS_KEY_ID=AKIAKFAASDEVONLY0001",
            "KFAAS_AWS_SECRET_ACCESS_KEY=dev-only-aws-secret-access-key",
        ]
    secret_lines = [
        f"{_secret_var(fn, key)}=dev-only-{fn.name}-{key.lower().replace('_', '-')}"
        for fn in app.functions
        for key in fn.secrets
    ]
    if secret_lines:
        lines += ["", "# Function secrets (function.yaml `secrets`)", *secret_lines]
    return "\n".join(lines) + "\n"


def render_compose(app: AppSpec) -> dict[str, str]:
    compose = {
        "name": "kfaas",
        "services": _services(app),
        # compose interpolates ${...} in every value, config content included: escape the script's `$`.
        "configs": {"mongodb-users": {"content": mongodb_users_script(app).replace("$", "$$")}},
        "volumes": {"mongodb-data": {}, "rabbitmq-data": {}, **({"s3-data": {}} if _uses_s3(app) else {})},
    }
    intro = (
        "# The kfaas dev stack: `cp .env.example .env && docker compose up --build`.\n"
        f"# API on http://127.0.0.1:{PORT}, Mailpit UI on http://127.0.0.1:8025, RabbitMQ UI on "
        "http://127.0.0.1:15672.\n"
    )
    return {
        "docker-compose.yml": header("compose") + intro + dump_yaml(compose),
        ".env.example": _env_example(app),
    }
