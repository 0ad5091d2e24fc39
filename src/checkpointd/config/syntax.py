"""Pure checks the config model runs on values that other layers interpret later.

A message template is rendered by ``actions.templates`` and pipeline stages are run by
``actions.strategies``; checking them here makes a mistake an error with its path at
``checkpointd check``, without the config layer importing the layers that use them.
"""

from __future__ import annotations

from collections.abc import Sequence

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["check_pipeline_stages", "check_template_syntax"]

_SYNTAX_ENV = ImmutableSandboxedEnvironment()


def check_template_syntax(source: str) -> None:
    """Raise ValueError naming the line of a Jinja2 syntax error in ``source``."""
    try:
        _SYNTAX_ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"invalid template (line {exc.lineno}): {exc.message}") from None


def check_pipeline_stages(stages: Sequence[Sequence[int]], action_count: int) -> None:
    """Raise ValueError unless ``stages`` name each of ``action_count`` actions once."""
    named = {index for stage in stages for index in stage}
    beyond = sorted(i for i in named if i >= action_count)
    if beyond:
        raise ValueError(
            f"pipeline stages name action {beyond[0]}, but there are only "
            f"{action_count} actions (indices 0..{action_count - 1})"
        )
    missing = sorted(set(range(action_count)) - named)
    if missing:
        raise ValueError(
            f"action {missing[0]} is in no pipeline stage; list every action index once"
        )
