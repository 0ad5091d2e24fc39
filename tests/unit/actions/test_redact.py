"""Three secret leaks the reliability suite found (tests/reliability/test_secrets.py), fixed.

1. A literal secret of the wrong type in a secret field (``secret: 73918264550193``, an
   unquoted number) was printed by the config error ("found 73918264550193"): by
   ``checkpointd check``, ``run``, and in a refused reload's answer and log.
2. The scrubber masked a webhook URL's whole query (``api_key=...``) but not the token
   alone, so an error that quoted just the token kept it.
3. ``checkpointd actions test --send`` printed a python action's exception unscrubbed.
"""

from __future__ import annotations

import textwrap

import pytest

from checkpointd.actions.redact import Scrubber, secrets_of
from checkpointd.cli import main
from checkpointd.config import parse_config
from checkpointd.config.models import WebhookAction
from checkpointd.errors import ConfigError

QUERY_TOKEN = "QUERYtoken0123abc"
NUMBER = 73918264550193


def _errors(action: str, daemon: str = "") -> str:
    text = textwrap.dedent(
        """
        {daemon}
        checkpoints:
          - name: a
            data_source: {{type: inline, rows: [{{x: 1}}]}}
            actions:
              list:
                - {action}
        """
    ).format(action=action, daemon=daemon)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    return str(caught.value)


@pytest.mark.parametrize(
    ("action", "daemon", "key"),
    [
        (f'{{type: webhook, url: "http://h/x", secret: {NUMBER}}}', "", "secret"),
        (f'{{type: webhook, url: "http://h/x", headers: {{X-Api-Key: {NUMBER}}}}}', "",
         "headers.X-Api-Key"),
        (f"{{type: slack, webhook_url: {NUMBER}}}", "", "webhook_url"),
        (f"{{type: pagerduty, routing_key: {NUMBER}.5}}", "", "routing_key"),
        ('{type: python, target: "m:f"}', f"daemon: {{http: {{token: {NUMBER}}}}}", "token"),
        (f'{{type: webhook, url: "http://h/x", secret: {{nested: "{QUERY_TOKEN}"}}}}', "",
         "secret"),
    ],
)  # fmt: skip
def test_a_mistyped_literal_secret_is_named_by_its_kind_never_printed(action, daemon, key):
    message = _errors(action, daemon)
    assert key in message
    assert str(NUMBER) not in message
    assert QUERY_TOKEN not in message
    assert "expected a string" in message


def test_a_wrong_value_in_an_ordinary_field_is_still_shown():
    message = _errors('{type: webhook, url: "http://h/x", timeout: "soon"}')
    assert "found 'soon'" in message


def test_the_scrubber_masks_a_query_token_quoted_without_its_name():
    hook = WebhookAction(
        type="webhook", url=f"https://hooks.example/p?api_key={QUERY_TOKEN}&format=json"
    )
    scrub = Scrubber(secrets_of(hook))
    masked = scrub(f"the receiver said: token {QUERY_TOKEN} is invalid (format json)")
    assert QUERY_TOKEN not in masked
    assert "format json" in masked  # short values stay: they would mask ordinary words


def leaky(result: object) -> None:
    raise RuntimeError(f"could not post with {QUERY_TOKEN}")


def test_actions_test_send_scrubs_a_python_actions_error(tmp_path, capsys):
    config = tmp_path / "checkpointd.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            daemon: {{state_dir: {tmp_path / "state"}}}
            checkpoints:
              - name: orders
                data_source: {{type: inline, rows: [{{x: 1}}]}}
                actions:
                  list:
                    - {{type: python, target: "{__name__}:leaky", notify_on: always}}
                    - {{type: webhook, url: "http://127.0.0.1:9/h?token={QUERY_TOKEN}",
                        notify_on: failure}}
            """
        )
    )
    code = main(["actions", "test", "-c", str(config), "orders", "--status", "success", "--send"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED: RuntimeError: could not post with ***" in out
    assert QUERY_TOKEN not in out
