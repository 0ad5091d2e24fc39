"""The ``kafka:`` section as aiokafka client arguments: SASL and SSL settings pass through."""

from __future__ import annotations

import ssl

from checkpointd.config.models import KafkaConfig
from checkpointd.triggers.kafka import client_options


def test_plaintext_needs_only_servers_and_client_id() -> None:
    options = client_options(KafkaConfig(bootstrap_servers="k1:9092,k2:9092", client_id="dq-1"))

    assert options == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "client_id": "dq-1",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_settings_pass_through_with_the_password_unwrapped() -> None:
    config = KafkaConfig.model_validate(
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "checkpointd",
            "sasl_plain_password": "s3cret",
        }
    )

    options = client_options(config)

    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "checkpointd"
    assert options["sasl_plain_password"] == "s3cret"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "s3cret" not in repr(config)  # the config itself keeps it secret


def test_ssl_builds_a_verifying_context() -> None:
    options = client_options(KafkaConfig(security_protocol="SSL"))

    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert "sasl_mechanism" not in options
