"""Message templates (Jinja2, sandboxed) for the webhook body and the Slack text.

A template sees plain data only, never config or secrets::

    result            the result JSON (CheckpointResult.to_dict())
    checkpoint        result["checkpoint"]
    status            result["status"]
    run_id            result["run_id"]
    kind              "notify" or "recovered"
    previous_status   the checkpoint's status before this run, or None
    failed_validators the validators of the result whose status is not success
    run_url           <base_url>/api/v1/runs/<run_id> when base_url is configured
    delivery_id       the delivery's idempotency key

The environment is Jinja2's ``ImmutableSandboxedEnvironment`` with
``StrictUndefined``: a template cannot reach Python internals or mutate the
data, and a misspelt name is an error instead of an empty string. Output is
capped at :data:`MAX_OUTPUT` characters.
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from checkpointd.actions.channel import Delivery
from checkpointd.config.syntax import check_template_syntax
from checkpointd.errors import DeliveryError

__all__ = ["MAX_OUTPUT", "Template", "compile_template", "template_context"]

MAX_OUTPUT = 1_000_000

_ENV = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
)
_ENV.policies["json.dumps_kwargs"] = {"sort_keys": False, "default": str}


class Template:
    """A compiled template; :meth:`render` raises DeliveryError (not retryable) on failure."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._template = _ENV.from_string(source)

    def render(self, context: dict[str, Any], *, what: str) -> str:
        try:
            text = self._template.render(context)
        except Exception as exc:  # undefined names, sandbox refusals, bad operations
            raise DeliveryError(
                f"{what}: template failed: {type(exc).__name__}: {exc}", retryable=False
            ) from None
        if len(text) > MAX_OUTPUT:
            raise DeliveryError(
                f"{what}: template output is {len(text)} characters, over {MAX_OUTPUT}",
                retryable=False,
            )
        return text


def compile_template(source: str) -> Template:
    """Compile ``source``; raises ValueError naming the line of a syntax error."""
    check_template_syntax(source)
    return Template(source)


def template_context(delivery: Delivery, base_url: str | None = None) -> dict[str, Any]:
    """The names a template sees (see the module docstring)."""
    result = delivery.result_dict()
    return {
        "result": result,
        "checkpoint": result["checkpoint"],
        "status": result["status"],
        "run_id": result["run_id"],
        "kind": delivery.kind,
        "previous_status": delivery.previous_status.value if delivery.previous_status else None,
        "failed_validators": [v for v in result["validators"] if v["status"] != "success"],
        "run_url": run_url(base_url, delivery.run_id),
        "delivery_id": delivery.id,
    }


def run_url(base_url: str | None, run_id: str) -> str | None:
    """Where a run can be seen, when the daemon's public base URL is configured."""
    if not base_url:
        return None
    return f"{base_url.rstrip('/')}/api/v1/runs/{run_id}"
