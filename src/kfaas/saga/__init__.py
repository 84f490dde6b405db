"""The saga part: state machines in the Amazon States Language, run durably on the broker.

- ``_paths``, ``_intrinsics``, ``_choice``, ``_errors``: JSONPath as ASL uses it, the intrinsic functions,
  Choice rules, the error names and how Retry and Catch match them;
- ``_definition``: validation (statelint plus compiling every path and rule) and the compiled definition;
- ``_interpreter``: the pure transition function over an execution's JSON state (no I/O, no waiting);
- ``_local``: the interpreter driven in this process with a pluggable task invoker (tests);
- ``_store``, ``_engine``, ``_server``, ``_ops``: executions in MongoDB, the durable engine, its HTTP face
  (broker deliveries and the executions API), the operations ``kfaas executions`` shares with it;
- ``_graph``: the picture of a state machine with an execution's path (SVG or Mermaid);
- ``cli`` (``kfaas saga``, the engine process) and ``executions`` (``kfaas executions``).

May import: the shared base, the events part and the spec, like the broker. Never the function runtime, the
broker's internals, the gateway, render or dev. The engine process (``kfaas saga``) is a server of its own,
beside the broker: it reaches functions only through the broker's external contract (CloudEvents into the
ingress, Triggers with exact filters, replies published back).
"""

from kfaas.saga._definition import DefinitionError, Machine, compile_definition
from kfaas.saga._engine import Engine
from kfaas.saga._errors import StatesError
from kfaas.saga._interpreter import DEFAULT_LIMITS, Limits, Run
from kfaas.saga._local import TaskFailed, run_local
from kfaas.saga._server import EngineApp

__all__ = [
    "DEFAULT_LIMITS",
    "DefinitionError",
    "Engine",
    "EngineApp",
    "Limits",
    "Machine",
    "Run",
    "StatesError",
    "TaskFailed",
    "compile_definition",
    "run_local",
]
