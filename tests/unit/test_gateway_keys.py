"""API keys: a signed delegation the gateway verifies without a database."""

from __future__ import annotations

import base64
import json

import pytest
from solders.keypair import Keypair

from nosgrid.core.apikeys import (
    issue_key,
    parse_claims,
    parse_duration,
    verify_key,
)
from nosgrid.core.errors import AuthError, InvalidApiKey, NosgridError

NOW = 1_800_000_000


def make(kp: Keypair, **kw: object) -> str:
    args: dict[str, object] = {"cap": 5_000_000, "expires_at": NOW + 3600, "issued_at": NOW}
    args.update(kw)
    return issue_key(kp, **args)  # type: ignore[arg-type]


def test_round_trip() -> None:
    kp = Keypair()
    key = make(kp, models=("smollm2",), kid="abc")
    assert key.startswith("ngk_")
    claims = verify_key(key, now=NOW)
    assert (claims.owner, claims.kid, claims.cap) == (str(kp.pubkey()), "abc", 5_000_000)
    assert claims.allows("smollm2") and not claims.allows("other")
    assert verify_key(make(kp), now=NOW).allows("anything")


def test_expired() -> None:
    key = make(Keypair())
    with pytest.raises(InvalidApiKey) as err:
        verify_key(key, now=NOW + 3600)
    assert err.value.reason == "expired"


def test_altered_claims_fail_the_signature() -> None:
    key = make(Keypair(), cap=1)
    _claims, body, sig = parse_claims(key)
    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw["cap"] = 10**12
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidApiKey) as err:
        verify_key(f"ngk_{forged}.{sig}", now=NOW)
    assert err.value.reason == "bad_signature"


def test_someone_elses_signature_fails() -> None:
    a, b = make(Keypair()), make(Keypair())
    with pytest.raises(InvalidApiKey) as err:
        verify_key(a.split(".")[0] + "." + b.split(".")[1], now=NOW)
    assert err.value.reason == "bad_signature"


@pytest.mark.parametrize("key", ["", "sk-123", "ngk_", "ngk_abc", "ngk_a.b.c", "ngk_!!!.x",
                                 "ngk_" + "e30" + ".1111"])
def test_malformed(key: str) -> None:
    with pytest.raises(InvalidApiKey) as err:
        verify_key(key, now=NOW)
    assert err.value.reason == "malformed"


def test_a_rejected_key_is_a_401_in_the_error_tree() -> None:
    with pytest.raises(InvalidApiKey) as err:
        verify_key("sk-123", now=NOW)
    assert isinstance(err.value, AuthError) and isinstance(err.value, NosgridError)
    assert (err.value.http_status, err.value.code) == (401, "invalid_api_key")
    again = NosgridError.from_dict(err.value.to_dict())  # as the SDK rebuilds it
    assert isinstance(again, InvalidApiKey) and again.reason == "malformed"


@pytest.mark.parametrize("kid", ["a:b", "", "x" * 65, "sp ace"])
def test_a_key_id_is_a_plain_name(kid: str) -> None:
    """Key ids are part of ledger account names (``gwhold:<kid>:<worker>``)."""
    with pytest.raises(ValueError):
        make(Keypair(), kid=kid)
    forged = make(Keypair(), kid="ok")  # a key made by hand with such an id is refused too
    claims, body, _sig = parse_claims(forged)
    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw["kid"] = kid
    text = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidApiKey) as err:
        parse_claims(f"ngk_{text}.x")
    assert err.value.reason == "malformed" and claims.kid == "ok"


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError):
        make(Keypair(), cap=0)


# `--expires 30d` on `nosgrid keys create`: the parser of the flag's text, not a timing
@pytest.mark.parametrize(("text", "seconds"), [("30d", 2_592_000), ("12h", 43_200),
                                               ("15m", 900), ("90", 90)])
def test_expiry_flag_text_is_parsed_to_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "d", "-1d", "1y"])
def test_bad_expiry_flag_text_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)
