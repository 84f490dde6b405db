"""``kfaas serve`` for ``kind: lambda``: the loader the runtime finds through its plugin entry point.

``pyproject.toml`` registers ``lambda = "kfaas.aws.serve:load"`` in the group ``kfaas.signature_types``;
for ``FUNCTION_SIGNATURE_TYPE=lambda`` (or a description of kind lambda) the runtime calls :func:`load`
with its settings and serves the target it gets back, so the runtime never imports this part and a
cloudevent function never loads it.
"""

from __future__ import annotations

import os
from typing import Any

from kfaas.aws._adapter import LambdaFunction
from kfaas.aws._config import ConfigError, LambdaConfig, description_path, load_config
from kfaas.runtime.targets import LoadError, Target

__all__ = ["build", "invoker_for", "load"]


def invoker_for(config: LambdaConfig, environ: dict[str, str] | None = None) -> Any:
    """The in-process invoker for a python runtime, else the Runtime API bridge (a pool, or the image's client)."""
    if config.in_process:
        from kfaas.aws._invoke import PythonInvoker

        invoker = PythonInvoker(config)
        invoker.load()  # a handler that does not import fails the start, as a function that does not load
        return invoker
    from kfaas.aws._bridge import BridgeInvoker

    return BridgeInvoker(config, external=config.image is not None, environ=environ)


def build(config: LambdaConfig, environ: dict[str, str] | None = None) -> tuple[LambdaFunction, Target]:
    function = LambdaFunction(config, invoker_for(config, environ))

    async def handle(event: Any) -> Any:
        return await function.handle_event(event)

    target = Target(
        handle,
        "cloudevent",
        config.name,
        routes=function.asgi if config.routes else None,
        on_start=function.start,
        on_stop=function.stop,
        checks=function.invoker.health,
    )
    return function, target


def load(settings: Any) -> Target:
    """The runtime's plugin loader: the lambda function described beside ``FUNCTION_SOURCE`` (or at
    ``KFAAS_DESCRIPTION``), as a cloudevent target with its API routes."""
    try:
        config = load_config(description_path(os.environ, settings.source))
        if settings.function_name:
            import dataclasses

            config = dataclasses.replace(config, name=settings.function_name)
        return build(config)[1]
    except ConfigError as exc:
        raise LoadError(str(exc)) from None
    except ImportError as exc:
        raise LoadError(f"handler of {settings.source}: {exc}") from exc
