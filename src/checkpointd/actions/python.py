"""The ``python`` channel: call ``module:attribute`` with the result.

The target may be

- a function, sync or async, called as ``fn(result)`` (plus ``delivery=`` when
  it has a parameter of that name, for the idempotency key and the
  notification kind). Raising fails the attempt (a ``DeliveryError`` keeps
  its ``retryable``/``retry_after``; anything else is retried);
- an action in the sense of the Python API: an ``AsyncBaseAction`` subclass or
  instance, or anything with ``execute(result)``/``execute_async(result)``
  (classes are instantiated without arguments). It is run through
  ``actions.adapters.ActionChannel``; an ``ActionResult`` that is not ok fails the attempt.

Sync code runs in a worker thread (``ChannelContext.executor``), so it cannot
block the event loop; the dispatcher's timeout stops waiting for it, but a
thread cannot be interrupted, so a sync target should bound its own I/O.
The module is imported on the first delivery, not when the daemon starts.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from checkpointd.actions.adapters import ActionChannel, raise_for_result
from checkpointd.actions.base import ActionResult
from checkpointd.actions.channel import ChannelContext, Delivery, DeliveryOutcome, Preview
from checkpointd.config.models import PythonAction
from checkpointd.errors import DeliveryError

__all__ = ["PythonChannel", "build_channel", "resolve_target"]


def resolve_target(target: str) -> Any:
    """Import ``module:attr.path``; DeliveryError (not retryable) when it cannot be loaded."""
    module_name, _, attr_path = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise DeliveryError(
            f"python target {target!r} cannot be loaded: {type(exc).__name__}: {exc}",
            retryable=False,
        ) from None
    return obj


def _is_action(obj: Any) -> bool:
    return callable(getattr(obj, "execute_async", None)) or callable(getattr(obj, "execute", None))


class PythonChannel:
    """Calls the target of one ``python`` action."""

    action_type = "python"

    def __init__(self, name: str, config: PythonAction, context: ChannelContext) -> None:
        self.name = name
        self.config = config
        self.destination = f"python:{config.target}"
        self._context = context
        self._action: ActionChannel | None = None
        self._function: Callable[..., Any] | None = None

    def _load(self) -> None:
        if self._action is not None or self._function is not None:
            return
        obj = resolve_target(self.config.target)
        if inspect.isclass(obj) and _is_action(obj):
            obj = obj()
        if _is_action(obj):
            self._action = ActionChannel(
                obj, destination=self.destination, executor=self._context.executor
            )
        elif callable(obj):
            self._function = obj
        else:
            raise DeliveryError(
                f"python target {self.config.target!r} is a {type(obj).__name__}, not a "
                "function or an action",
                retryable=False,
            )

    async def send(self, delivery: Delivery) -> DeliveryOutcome:
        self._load()
        if self._action is not None:
            return await self._action.send(delivery)
        assert self._function is not None
        outcome = await self._call(self._function, delivery)
        if isinstance(outcome, ActionResult):
            raise_for_result(outcome)
            return DeliveryOutcome(None, outcome.message or outcome.status.value)
        return DeliveryOutcome(None, "called")

    async def _call(self, fn: Callable[..., Any], delivery: Delivery) -> Any:
        kwargs: dict[str, Any] = {}
        try:
            if "delivery" in inspect.signature(fn).parameters:
                kwargs["delivery"] = delivery
        except (TypeError, ValueError):  # builtins without a signature
            pass
        if inspect.iscoroutinefunction(fn):
            return await fn(delivery.result, **kwargs)
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, delivery.result, **kwargs)
        context = contextvars.copy_context()
        value = await loop.run_in_executor(self._context.executor, context.run, call)
        if inspect.isawaitable(value):  # a sync function that returned a coroutine
            return await value
        return value

    def preview(self, delivery: Delivery) -> Preview:
        return Preview(self.destination, "call", {}, f"{self.config.target}(result)")

    async def close(self) -> None:
        return None


def build_channel(action: PythonAction, context: ChannelContext, name: str) -> PythonChannel:
    """The channel of one ``python`` action named ``name``."""
    return PythonChannel(name, action, context)
