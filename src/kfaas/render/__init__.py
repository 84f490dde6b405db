"""The render part: deployment files from the function descriptions (``functions/*/function.yaml``).

Three targets share one source: ``docker-compose.yml`` (+ ``.env.example``), the generated parts of
``k8s/`` and the functions block of ``charts/kfaas/values.yaml``. Every renderer is a pure function of the
:class:`~kfaas.spec.AppSpec` returning ``{relative path: file content}``; ``kfaas render --check`` compares
that with the files on disk, so a committed file that drifts from the descriptions fails CI.

May import: the spec (and the version from the shared base). Never the runtime or function code: rendering
reads descriptions, it does not load functions.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kfaas.spec import AppSpec, FunctionSpec

__all__ = [
    "TARGETS",
    "Drift",
    "check",
    "dump_yaml",
    "env_suffix",
    "header",
    "image",
    "lambda_runtime_env",
    "mongodb_users_script",
    "render",
    "write",
]

NAMESPACE = "kfaas"
IMAGE_REPOSITORY = "kfaas"
PLATFORM_IMAGE = "platform"  # the broker, gateway and dead-letter sink (Dockerfile.base --target platform)
MONGODB_DATABASE = "kfaas"


def header(command: str, comment: str = "#") -> str:
    return (
        f"{comment} Rendered by `kfaas render {command}` from functions/*/function.yaml. Do not edit:\n"
        f"{comment} change the function descriptions and render again (CI fails when this file drifts).\n"
    )


class _Dumper(yaml.SafeDumper):
    """Block-style YAML without anchors; multi-line strings as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def dump_yaml(*docs: Any) -> str:
    """YAML documents separated by ``---``, keys in insertion order."""
    parts = [
        yaml.dump(
            doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True
        )
        for doc in docs
    ]
    return "---\n".join(parts)


def env_suffix(name: str) -> str:
    """``get-user`` → ``GET_USER`` (for per-function environment variable names)."""
    return name.upper().replace("-", "_")


def version() -> str:
    from kfaas.base.version import __version__

    return str(__version__)


def image(name: str, tag: str | None = None) -> str:
    return f"{IMAGE_REPOSITORY}/{name}:{tag or version()}"


def lambda_runtime_env(fn: FunctionSpec) -> dict[str, str]:
    """What a Lambda image's runtime client reads (the image's own ENV stays: LAMBDA_TASK_ROOT, ...)."""
    memory = int(fn.memory[:-2]) * (1024 if fn.memory.endswith("Gi") else 1)
    return {
        # set: images built from AWS's base images start their runtime client instead of the emulator
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{fn.lambda_.runtime_api_port}",
        "AWS_LAMBDA_FUNCTION_NAME": fn.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
        "AWS_REGION": fn.lambda_.region,
        "AWS_DEFAULT_REGION": fn.lambda_.region,
    }


# --- MongoDB: one user and one role per function (the seed's IAM policies) -------------------------------

# Privileges per role on each collection of ``database.collections``. Database-wide built-in roles would
# give a function every collection; custom roles scoped to collections keep least privilege.
_READ_ACTIONS = ["find", "listIndexes", "collStats", "killCursors", "changeStream"]
_WRITE_ACTIONS = ["insert", "update", "remove", "createCollection", "createIndex", "dropIndex"]

_USERS_SCRIPT = """\
// Creates or updates one role and one user per function in the application database (idempotent: run it
// after every change of the function descriptions), as a user allowed to manage users and roles (root).
//
// Secrets are read here, never from the command line, where the process list would show them: each from
// the file of that name in KFAAS_SECRETS_DIR (a mounted Secret, on Kubernetes) or else from the
// environment variable of that name (docker compose). With KFAAS_MONGODB_HOST set, the script connects
// to it itself, as KFAAS_ROOT_USERNAME with KFAAS_ROOT_PASSWORD (mongosh runs with --nodb); otherwise it
// uses the database mongosh was started with.
const fs = require("fs");
function secret(name) {
  const dir = process.env.KFAAS_SECRETS_DIR;
  if (dir && fs.existsSync(`${dir}/${name}`)) {
    return fs.readFileSync(`${dir}/${name}`, "utf8");
  }
  return process.env[name];
}
function admin() {
  const host = process.env.KFAAS_MONGODB_HOST;
  if (!host) {
    return db;
  }
  const user = secret("KFAAS_ROOT_USERNAME");
  const password = secret("KFAAS_ROOT_PASSWORD");
  if (!user || !password) {
    throw new Error("KFAAS_ROOT_USERNAME and KFAAS_ROOT_PASSWORD are needed to log in to " + host);
  }
  const login = `${encodeURIComponent(user)}:${encodeURIComponent(password)}@`;
  for (let attempt = 1; ; attempt++) {
    try {
      const conn = connect(`mongodb://${login}${host}/admin?authSource=admin`);
      conn.runCommand({ ping: 1 });
      return conn;
    } catch (error) {
      if (attempt >= 40) {
        throw error;
      }
      print(`kfaas: waiting for MongoDB at ${host}: ${error.message}`);
      sleep(3000);
    }
  }
}
const target = admin().getSiblingDB(database);
for (const fn of functions) {
  const pwd = secret(fn.passwordEnv);
  if (!pwd) {
    throw new Error(`${fn.passwordEnv} is not set: cannot create the MongoDB user of ${fn.user}`);
  }
  const privileges = fn.collections.map((collection) => ({
    resource: { db: database, collection: collection },
    actions: fn.actions,
  }));
  if (target.getRole(fn.role)) {
    target.updateRole(fn.role, { privileges: privileges, roles: [] });
  } else {
    target.createRole({ role: fn.role, privileges: privileges, roles: [] });
  }
  if (target.getUser(fn.user)) {
    target.updateUser(fn.user, { pwd: pwd, roles: [{ role: fn.role, db: database }] });
  } else {
    target.createUser({ user: fn.user, pwd: pwd, roles: [{ role: fn.role, db: database }] });
  }
  print(`kfaas: user ${fn.user} has ${fn.access} on [${fn.collections.join(", ")}]`);
}
"""


def mongodb_functions(app: AppSpec) -> list[FunctionSpec]:
    """Functions that get their own MongoDB user ("mongodb" in uses), and the saga engine when there is one."""
    return [fn for fn in app.subscribers if "mongodb" in fn.uses]


def password_env(fn: FunctionSpec) -> str:
    return f"KFAAS_PASSWORD_{env_suffix(fn.name)}"


def mongodb_users_script(app: AppSpec) -> str:
    """The mongosh script creating every function's role and user (compose and k8s run the same one)."""
    import json

    users = []
    for fn in mongodb_functions(app):
        access = fn.database.role if fn.database else "none"
        actions = _READ_ACTIONS + (_WRITE_ACTIONS if access == "readWrite" else [])
        users.append(
            {
                "user": fn.name,
                "role": f"kfaas-{fn.name}",
                "access": access,
                "collections": list(fn.database.collections) if fn.database else [],
                "actions": actions if fn.database else [],
                "passwordEnv": password_env(fn),
            }
        )
    lines = [
        "// Rendered by `kfaas render` from functions/*/function.yaml (database: role, collections).",
        f"const database = {json.dumps(MONGODB_DATABASE)};",
        "const functions = [",
        *[f"  {json.dumps(u)}," for u in users],
        "];",
    ]
    indexes = sorted(
        {
            (i.collection, tuple(i.keys))
            for fn in mongodb_functions(app)
            if fn.database
            for i in fn.database.indexes
        }
    )
    tail = ""
    if indexes:  # the unique indexes of the descriptions (createIndex of an existing index does nothing)
        parts = []
        for collection, keys in indexes:
            # partial: documents without the key fields (keyed by _id alone) are left out of the index
            spec = json.dumps(dict.fromkeys(keys, 1))
            present = json.dumps({k: {"$exists": True} for k in keys})
            done = json.dumps(f"kfaas: unique index {spec} on {collection}")
            parts.append(
                f"target.getCollection({json.dumps(collection)}).createIndex({spec}, "
                f"{{ unique: true, partialFilterExpression: {present} }});\nprint({done});\n"
            )
        tail = "".join(parts)
    return "\n".join(lines) + "\n" + _USERS_SCRIPT + tail


# --- targets, writing and drift ---------------------------------------------------------------------------

Renderer = Callable[[AppSpec, Path], dict[str, str]]


def _compose(app: AppSpec, root: Path) -> dict[str, str]:
    from kfaas.render.compose import render_compose

    return render_compose(app)


def _k8s(app: AppSpec, root: Path) -> dict[str, str]:
    from kfaas.render.k8s import render_k8s

    return render_k8s(app)


def _chart(app: AppSpec, root: Path) -> dict[str, str]:
    from kfaas.render.chart import render_values

    return render_values(app, root)


TARGETS: dict[str, Renderer] = {"compose": _compose, "k8s": _k8s, "chart": _chart}


def render(app: AppSpec, root: Path, targets: Iterable[str]) -> dict[str, str]:
    """``{path relative to root: content}`` for the chosen targets."""
    files: dict[str, str] = {}
    for target in targets:
        files.update(TARGETS[target](app, root))
    return files


@dataclass(frozen=True)
class Drift:
    path: str
    diff: str


def check(root: Path, files: Mapping[str, str]) -> list[Drift]:
    """Files whose content on disk differs from the rendering (missing files count), with a unified diff."""
    drifts = []
    for rel, content in sorted(files.items()):
        path = root / rel
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != content:
            diff = "".join(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    content.splitlines(keepends=True),
                    fromfile=f"{rel} (committed)" if path.is_file() else f"{rel} (missing)",
                    tofile=f"{rel} (rendered)",
                )
            )
            drifts.append(Drift(rel, diff))
    return drifts


def write(root: Path, files: Mapping[str, str]) -> list[str]:
    """Write the files that changed; returns their paths."""
    changed = []
    for rel, content in sorted(files.items()):
        path = root / rel
        if path.is_file() and path.read_text(encoding="utf-8") == content:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        changed.append(rel)
    return changed
