"""Bad text in any string of any request gets a clear 4xx and changes nothing; never a 5xx.

JSON lets a string hold a lone UTF-16 surrogate (``"\\ud800"``) that no UTF-8 encoder,
database or hash accepts; NULs and very long strings are the other usual suspects. Every
string of every route's JSON body (values, and a new key in each object), and every path
parameter, gets hypothesis text holding such characters, sent escaped (``\\ud800``) or as
raw bytes, signed by a funded key (the admin, and the node running a fresh job) and by an
unfunded one. A refused request leaves the ledger head, the balances, the jobs and the
markets as they were. ``BODIES`` and ``PATH_ROUTES`` must name every route the OpenAPI
document lists with a body or a path parameter, so a new route is fuzzed too.

The gateway's ``/openai/v1`` routes read their bodies themselves and belong to the gateway;
they are not covered here.

Examples per target: ``NOSGRID_BAD_TEXT_EXAMPLES`` (default 8).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from solders.keypair import Keypair
from starlette.testclient import TestClient

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.services import accounts, lifecycle
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.apikeys import issue_key
from nosgrid.core.jobs.load import parse_job_definition
from nosgrid.core.markets import parse_market_params
from nosgrid.core.money import BASE_UNITS_PER_NOS
from nosgrid.sdk.wallet import sign_headers

EXAMPLES = int(os.environ.get("NOSGRID_BAD_TEXT_EXAMPLES", "8"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
UNCOVERED = ("/openai/",)  # the gateway's own routes (see the module docstring)

SPEC: dict[str, Any] = {
    "version": "0.1", "type": "container",
    "meta": {"description": "a job", "nosgrid": {"market": "cpu", "timeout": 10}},
    "global": {"env": {"G": "g"}, "variables": {"V": "v"}},
    "ops": [{"type": "container/run", "id": "main",
             "args": {"image": "busybox", "cmd": ["echo", "hi"], "env": {"A": "a"},
                      "work_dir": "/work"},
             "results": {"line": "hi.*"}}],
}
LOGS = [{"stream": "stdout", "data": "hello\n", "at": 1.0}]
SHA = hashlib.sha256(b"seeded blob").hexdigest()
#: a valid body for every route that takes JSON ("KEY" is filled in with a fresh API key)
BODIES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("POST", "/v1/markets"): [{"name": "m1", "price_per_second": 1, "max_timeout": 60,
                               "gpu_models": ["h100"]}],
    ("POST", "/v1/faucet"): [{"amount": "1"}],
    ("POST", "/v1/nodes/register"): [{"hardware": {
        "cpu_model": "cpu", "cpu_cores": 2, "memory_mb": 4096, "podman_version": "5",
        "gpus": [{"model": "gpu", "vram_mb": 1, "uuid": "GPU-1"}]}, "markets": ["cpu"]}],
    ("POST", "/v1/nodes/poll"): [{"wait": 0}],
    ("POST", "/v1/jobs"): [{"spec": SPEC, "market": "cpu", "timeout": 10, "max_price": "0.01"},
                           {"spec_text": json.dumps(SPEC), "market": "cpu"}],
    ("POST", "/v1/jobs/batch"): [{"jobs": [{"spec": SPEC, "market": "cpu", "timeout": 10},
                                           {"spec_text": json.dumps(SPEC), "market": "cpu"}]}],
    ("POST", "/v1/jobs/{job_id}/finish"): [{
        "seconds_used": 1, "exit_code": 0, "results": {"main": {"line": ["hi"]}},
        "outputs": [{"path": "/outputs/a.txt", "sha256": SHA, "size": 11}], "logs": LOGS}],
    ("POST", "/v1/jobs/{job_id}/fail"): [{"reason": "it broke", "fault": "client",
                                          "logs": LOGS}],
    ("POST", "/v1/jobs/{job_id}/logs"): [{"chunks": LOGS}],
    ("POST", "/v1/jobs/{job_id}/service"): [{"op_id": "main", "endpoint": "http://127.0.0.1:1",
                                             "healthy": True, "model": "m"}],
    ("POST", "/v1/stake"): [{"action": "stake", "amount": "1", "days": 14}],
    ("POST", "/v1/solana/submit"): [{"transaction": "AAAA"}],
    ("POST", "/v1/solana/faucet"): [{"amount": "1"}],
    ("POST", "/v1/keys"): [{"key": "KEY", "label": "laptop"}],
    ("POST", "/v1/models/deployments"): [{"model": "m", "spec": SPEC, "market": "cpu"}],
    ("POST", "/v1/markets/{name}/reports"): [{"epoch": 1, "price": 1}],
    ("POST", "/v1/markets/{name}/ask"): [{"price": 1}],
    ("POST", "/v1/oracle/reporters"): [{"operator": "11111111111111111111111111111111",
                                        "consent": "1" * 88}],
    ("POST", "/v1/jobs/validate"): [{"spec_text": json.dumps(SPEC)}],
    ("POST", "/v1/jobs/{job_id}/extend"): [{"seconds": 5}],
    ("POST", "/v1/deployments"): [{"spec": SPEC, "strategy": "simple", "name": "d1",
                                   "market": "cpu", "timeout": 10, "schedule": None,
                                   "max_spend": "1"},
                                  {"spec_text": json.dumps(SPEC), "strategy": "simple"}],
    ("POST", "/v1/deployments/{ref}/update"): [{"spec": SPEC, "market": "cpu",
                                                "max_spend": "1"}],
}
#: every route with a path parameter but no JSON body
PATH_ROUTES: list[tuple[str, str]] = [
    ("GET", "/v1/markets/{name}"), ("GET", "/v1/markets/{name}/nodes"),
    ("GET", "/v1/nodes/{node_id}"), ("GET", "/v1/jobs/{job_id}"),
    ("GET", "/v1/jobs/{job_id}/spec"), ("GET", "/v1/jobs/{job_id}/result"),
    ("POST", "/v1/jobs/{job_id}/cancel"), ("POST", "/v1/jobs/{job_id}/start"),
    ("GET", "/v1/jobs/{job_id}/logs"), ("PUT", "/v1/blobs/{sha256}"),
    ("GET", "/v1/blobs/{sha256}"), ("GET", "/v1/jobs/{job_id}/verification"),
    ("GET", "/v1/solana/payouts/{job_id}"), ("POST", "/v1/keys/{kid}/revoke"),
    ("DELETE", "/v1/models/deployments/{model}"), ("GET", "/v1/markets/{name}/price"),
    ("GET", "/v1/oracle/reporters/{key}"), ("GET", "/v1/oracle/reports/{digest}"),
    ("GET", "/v1/markets/{name}/stats"), ("GET", "/v1/nodes/{node_id}/stats"),
    ("GET", "/v1/nodes/{node_id}/alerts"),
    ("GET", "/v1/deployments/{ref}"), ("GET", "/v1/deployments/{ref}/events"),
    ("POST", "/v1/deployments/{ref}/{action}"),
    ("GET", "/v1/jobs/{job_id}/receipt"), ("GET", "/v1/requests/{signature}"),
    ("GET", "/v1/usage/records/{record_hash}"),
]

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Target:
    """One place bad text goes: a path parameter, a string value, or a new key of an object."""

    method: str
    route: str
    body: int | None  # index into BODIES[(method, route)]
    kind: str  # "path", "value" or "key"
    loc: Loc | str

    def __str__(self) -> str:
        where = self.loc if isinstance(self.loc, str) else ".".join(map(str, self.loc))
        return f"{self.method} {self.route} #{self.body} {self.kind}:{where or '(top)'}"


def _strings(node: Any, loc: Loc = ()) -> Iterator[tuple[str, Loc]]:
    if isinstance(node, str):
        yield "value", loc
    elif isinstance(node, dict):
        yield "key", loc
        for k, v in node.items():
            yield from _strings(v, (*loc, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, (*loc, i))


def _params(route: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(route) if name]


def _targets() -> list[Target]:
    found = []
    for (method, route), bodies in BODIES.items():
        found += [Target(method, route, None, "path", p) for p in _params(route)]
        for i, body in enumerate(bodies):
            found += [Target(method, route, i, kind, loc) for kind, loc in _strings(body)]
    for method, route in PATH_ROUTES:
        found += [Target(method, route, None, "path", p) for p in _params(route)]
    return found


@dataclass
class Api:
    client: TestClient
    coord: Coordinator
    admin: Keypair  # funded, the admin, a registered node
    poor: Keypair  # never funded
    key: str  # an API key signed by the admin

    def fresh_job(self) -> str:
        """A job of the admin's, assigned to the admin's node and running."""
        me, now = str(self.admin.pubkey()), int(self.coord.now())
        with self.coord.store.uow() as uow:
            job = job_services.post_job(uow, client=me, definition=parse_job_definition(SPEC),
                                        market="cpu", timeout=10, now=now)
            job = lifecycle.assign_to(uow, job, me, now)
            job = job_services.start_job(uow, job.id, me, now)
            uow.commit()
        return job.id

    def state(self) -> tuple[Any, ...]:
        with self.coord.store.uow(write=False) as uow:
            return (uow.ledger.head(), uow.ledger.balances(), uow.jobs.count_by_state(),
                    [m.name for m in uow.markets.all()])

    def send(self, method: str, route: str, values: dict[str, str], body: Any, kp: Keypair,
             *, raw: bool) -> Any:
        path = route.format(**{k: quote(v.encode("utf-8", "surrogatepass"), safe="")
                               for k, v in values.items()})
        if body is None:
            content = b"blob bytes" if method == "PUT" else b""
        elif raw:  # the text's own bytes, lone surrogates encoded as UTF-8 would (CESU)
            content = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
        else:
            content = json.dumps(body).encode()
        headers = sign_headers(kp, method, unquote(path), content, now=self.coord.now())
        if body is not None:
            headers["content-type"] = "application/json"
        return self.client.request(method, path, content=content, headers=headers)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp: Path = tmp_path_factory.mktemp("bad-text")
    admin, poor = Keypair(), Keypair()
    me = str(admin.pubkey())
    app = create_app(CoordinatorSettings(db=str(tmp / "c.db"), data_dir=tmp,
                                         admin_keys=frozenset({me}), faucet=True,
                                         long_poll_max_s=0.0), background=False)
    coord: Coordinator = app.state.coordinator
    client = TestClient(app, raise_server_exceptions=False)
    with coord.store.uow() as uow:
        job_services.create_market(uow, parse_market_params(
            {"name": "cpu", "price_per_second": 1000, "max_timeout": 600}), 0)
        accounts.faucet(uow, me, 1000 * BASE_UNITS_PER_NOS, int(coord.now()))
        coord.blobs.path(SHA).parent.mkdir(parents=True, exist_ok=True)
        coord.blobs.path(SHA).write_bytes(b"seeded blob")
        uow.blobs.add(SHA, 11, me, int(coord.now()))
        uow.commit()
    now = int(coord.now())
    key = issue_key(admin, cap=BASE_UNITS_PER_NOS, expires_at=now + 3600, issued_at=now)
    a = Api(client, coord, admin, poor, key)
    reg = a.send("POST", "/v1/nodes/register", {}, BODIES[("POST", "/v1/nodes/register")][0],
                 admin, raw=False)
    assert reg.status_code == 200, reg.text
    yield a
    client.close()
    coord.store.close()


def test_every_route_with_text_is_fuzzed(api: Api) -> None:
    documented = api.client.app.openapi()["paths"]  # type: ignore[attr-defined]
    with_body = {(m.upper(), p) for p, item in documented.items() for m, op in item.items()
                 if "application/json" in op.get("requestBody", {}).get("content", {})}
    with_params = {(m.upper(), p) for p, item in documented.items() for m in item
                   if "{" in p} - with_body
    assert {r for r in with_body if not r[1].startswith(UNCOVERED)} == set(BODIES)
    assert {r for r in with_params if not r[1].startswith(UNCOVERED)} == set(PATH_ROUTES)


SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
ODD = st.sampled_from(["\x00", "\ud800", "\udfff", "\ud83d", "\ufffe", "\u202e", "\x7f"])
CHARS = st.one_of(st.characters(), SURROGATE, ODD)
BAD_TEXT = st.one_of(
    st.builds(lambda a, bad, b: a + bad + b, st.text(CHARS, max_size=8),
              st.one_of(SURROGATE, ODD), st.text(CHARS, max_size=8)),
    st.builds(lambda piece, n: piece * n, st.text(CHARS, min_size=1, max_size=3),
              st.sampled_from([300, 5_000, 70_000, 400_000])),
)


def _put(body: Any, target: Target, text: str, append: bool) -> Any:
    body = json.loads(json.dumps(body))  # a deep copy
    *parents, last = target.loc if target.kind == "value" else (*target.loc, None)
    node = body
    for part in parents:
        node = node[part]
    if target.kind == "key":
        node[text] = "x"
    else:
        node[last] = node[last] + text if append else text
    return body


@pytest.mark.parametrize("target", _targets(), ids=str)
def test_bad_text_gets_a_clear_4xx_and_changes_nothing(
        api: Api, target: Target, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)

    @FUZZ
    @given(text=BAD_TEXT, funded=st.booleans(), raw=st.booleans(), append=st.booleans())
    @example(text="\ud800", funded=False, raw=False, append=False)  # the issue's case
    @example(text="\ud800", funded=True, raw=True, append=True)
    @example(text="a\x00b", funded=True, raw=False, append=True)
    @example(text="x" * 400_000, funded=True, raw=False, append=False)
    def fuzz(text: str, funded: bool, raw: bool, append: bool) -> None:
        kp = api.admin if funded else api.poor
        values = {"job_id": api.fresh_job() if "{job_id}" in target.route else "",
                  "name": "cpu", "node_id": str(api.admin.pubkey()), "sha256": SHA,
                  "kid": "k1", "model": "m", "key": str(api.admin.pubkey()), "digest": SHA,
                  "ref": "d1", "action": "stop", "signature": "1" * 88, "record_hash": SHA}
        values = {k: v for k, v in values.items() if k in _params(target.route)}
        body: Any = None
        if target.body is not None:
            body = json.loads(json.dumps(BODIES[(target.method, target.route)][target.body])
                              .replace('"KEY"', json.dumps(api.key)))
        if target.kind == "path":  # URLs have their own limit (h11's is 64 KiB a line)
            assert isinstance(target.loc, str)
            text = text[:2_000]
            values[target.loc] = values[target.loc] + text if append else text
        else:
            body = _put(body, target, text, append)
        before = api.state()
        response = api.send(target.method, target.route, values, body, kp, raw=raw)
        where = f"{target} text={text[:40]!r}… funded={funded} raw={raw}"
        assert response.status_code < 500, f"{where} -> {response.status_code} {response.text}"
        assert "Traceback" not in response.text, where
        if response.status_code >= 400:
            error = response.json().get("error")
            assert isinstance(error, dict) and error.get("code") and error.get("message"), where
            assert api.state() == before, f"{where}: refused ({response.status_code}) but " \
                                          "the state changed"
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert not logged, f"{where}: logged {logged}"

    fuzz()


@pytest.mark.parametrize(("how", "status", "code"), [
    ("spec", 400, "invalid_text"),  # "\ud800" escaped in the body
    ("spec-raw", 400, "invalid_text"),  # the surrogate's own (CESU-8) bytes
    ("spec_text", 422, "invalid_job_spec"),  # escaped inside the definition's text
])
def test_the_issues_case_an_unfunded_key_and_a_surrogate_in_the_description(
        api: Api, how: str, status: int, code: str, caplog: pytest.LogCaptureFixture) -> None:
    spec = {**SPEC, "meta": {"description": "\ud800"}}
    body = {"spec_text": json.dumps(spec)} if how == "spec_text" else {"spec": spec}
    before = api.state()
    if how == "spec_text":  # the definition's text is read only for a funded key (issue 16)
        response = api.send("POST", "/v1/jobs", {}, {**body, "market": "cpu"}, api.poor,
                            raw=False)
        assert response.status_code == 402, response.text
        assert response.json()["error"]["code"] == "insufficient_funds"
        assert api.state() == before
    signer = api.admin if how == "spec_text" else api.poor
    response = api.send("POST", "/v1/jobs", {}, {**body, "market": "cpu"}, signer,
                        raw=how == "spec-raw")
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and "meta.description" in error["message"]
    assert "lone surrogate" in error["message"]
    assert api.state() == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
