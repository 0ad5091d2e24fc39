"""X-Checkpointd-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>."""

from __future__ import annotations

import hashlib
import hmac

from checkpointd.actions.signing import sign, verify

BODY = b'{"run_id":"r1","status":"failure"}'


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    header = sign("s3cret", BODY, 1_760_000_000)
    expected = hmac.new(b"s3cret", b"1760000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1760000000,v1={expected}"


def test_verify_accepts_a_fresh_signature():
    header = sign("s3cret", BODY, 1000)
    assert verify("s3cret", header, BODY, now=1010)


def test_verify_rejects_a_changed_body_a_wrong_secret_and_an_old_timestamp():
    header = sign("s3cret", BODY, 1000)
    assert not verify("s3cret", header, BODY + b" ", now=1000)
    assert not verify("other", header, BODY, now=1000)
    assert not verify("s3cret", header, BODY, now=1000 + 301)
    assert not verify("s3cret", "v1=abc", BODY, now=1000)
    assert not verify("s3cret", "garbage", BODY, now=1000)


def test_verify_accepts_any_of_several_v1_values_during_rotation():
    new = sign("new", BODY, 1000).split(",")[1]
    old = sign("old", BODY, 1000)
    assert verify("new", f"{old},{new}", BODY, now=1000)
