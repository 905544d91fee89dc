"""Schemathesis against the served OpenAPI: no generated input may get a 5xx, on any route,
and every answer matches what the document declares (status code, media type, body schema:
the routes' response models and the ``ErrorBody`` of 4xx/5xx).

Every operation runs twice: unsigned (mostly 401s, which is fine) and signed by a funded
key that is also the admin and a registered node, so the handlers behind the signature
check see generated bodies, path and query values too. The signature is added by a
``requests`` auth object, which sees the final bytes schemathesis sends.

Examples per operation: ``NOSGRID_SCHEMATHESIS_EXAMPLES`` (default 30 on CI, 6 locally).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from solders.keypair import Keypair

from nosgrid.coordinator.app import create_app
from nosgrid.coordinator.runtime import Coordinator
from nosgrid.coordinator.services import accounts
from nosgrid.coordinator.services import jobs as job_services
from nosgrid.coordinator.services import nodes as node_services
from nosgrid.coordinator.settings import CoordinatorSettings
from nosgrid.core.budgets import UNLIMITED
from nosgrid.core.jobs.load import parse_job_definition
from nosgrid.core.markets import HardwareReport, parse_market_params
from nosgrid.core.money import BASE_UNITS_PER_NOS
from nosgrid.sdk.wallet import sign_headers

EXAMPLES = int(os.environ.get("NOSGRID_SCHEMATHESIS_EXAMPLES",
                              "30" if os.environ.get("CI") else "6"))
#: a route that answers outside its declared response (model, media type, status) fails
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
#: OpenAI-shaped routes: their answers follow OpenAI's API, not our response models
UNMODELLED = ("/openai/",)
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                         suppress_health_check=list(HealthCheck), database=None)


class SignRequest(requests.auth.AuthBase):
    """Sign the prepared request exactly as the server will see it (decoded path + query)."""

    def __init__(self, keypair: Keypair) -> None:
        self.keypair = keypair

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(r.url or "")
        path = unquote(url.path) + (f"?{url.query}" if url.query else "")
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):  # a generator or file: read it once, send the bytes
            body = b"".join(body)  # type: ignore[arg-type]
            r.body = body
        r.headers.update(sign_headers(self.keypair, r.method or "GET", path, body))
        return r


@dataclass
class Api:
    app: Any
    coord: Coordinator
    sign: SignRequest
    pubkey: str
    job_id: str
    blob_sha256: str


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    kp = Keypair()
    me = str(kp.pubkey())
    settings_ = CoordinatorSettings(db=str(tmp / "c.db"), data_dir=tmp,
                                    admin_keys=frozenset({me}), faucet=True,
                                    long_poll_max_s=0.0,  # generated polls must not block
                                    # the unsigned run's ~1,000 requests drained the anonymous
                                    # budget, and the next run's schema load got a 429 (the
                                    # budgets have their own tests: test_abuse.py)
                                    budgets=UNLIMITED)
    app = create_app(settings_, background=False)
    coord: Coordinator = app.state.coordinator
    with coord.store.uow() as uow:  # a funded key, a market, a registered node, one job
        job_services.create_market(uow, parse_market_params(
            {"name": "cpu", "price_per_second": 1000, "max_timeout": 600}), 0)
        accounts.faucet(uow, me, 1000 * BASE_UNITS_PER_NOS, int(coord.now()))
        node_services.register(uow, me, HardwareReport(cpu_cores=2, memory_mb=4096), ["cpu"],
                               coord.now())
        job = job_services.post_job(uow, client=me, definition=parse_job_definition({
            "version": "0.1", "type": "container",
            "ops": [{"type": "container/run", "id": "main", "args": {"image": "busybox"}}]}),
            market="cpu", timeout=10, now=int(coord.now()))
        blob = b"seeded blob"
        sha = hashlib.sha256(blob).hexdigest()
        coord.blobs.path(sha).parent.mkdir(parents=True, exist_ok=True)
        coord.blobs.path(sha).write_bytes(blob)
        uow.blobs.add(sha, len(blob), me, int(coord.now()))
        uow.commit()
    yield Api(app, coord, SignRequest(kp), me, job.id, sha)
    coord.store.close()


def _operations(api: Api) -> list[Any]:
    loaded = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    ops = [result.ok() for result in loaded.get_all_operations()]
    documented = {(m.upper(), path) for path, item in api.app.openapi()["paths"].items()
                  for m in item}
    assert {(op.method.upper(), op.path) for op in ops} == documented  # none skipped
    return ops


def _strategy(op: Any, mode: GenerationMode, api: Api) -> st.SearchStrategy[Any]:
    """Generated cases, plus the same with path parameters that name existing things."""
    known = {"job_id": api.job_id, "node_id": api.pubkey, "name": "cpu",
             "sha256": api.blob_sha256}
    names = {p["name"] for p in op.definition.raw.get("parameters", []) if p["in"] == "path"}
    fixed = {k: v for k, v in known.items() if k in names}
    strategies = [op.as_strategy(generation_mode=mode)]
    if fixed:
        strategies.append(op.as_strategy(generation_mode=mode, path_parameters=fixed))
    return st.one_of(strategies)


def _check(label: str, case: Any, response: Any) -> None:
    where = f"{label}: {case.method} {case.formatted_path} query={case.query!r} " \
            f"body={getattr(case, 'body', None)!r}"
    assert response.status_code < 500, f"{where} -> {response.status_code} {response.text[:2000]}"
    assert "Traceback" not in response.text, where
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("error"), dict), (where, response.status_code, body)
        assert set(body["error"]) >= {"code", "message"}, (where, body)


def _fuzz(api: Api, op: Any, mode: GenerationMode, signed: bool) -> None:
    label = f"{op.method.upper()} {op.path}"

    @FUZZ_SETTINGS
    @given(case=_strategy(op, mode, api))
    def fuzz(case: Any) -> None:
        response = case.call(auth=api.sign) if signed else case.call()
        _check(label, case, response)
        if not op.path.startswith(UNMODELLED):
            try:
                case.validate_response(response, checks=CONFORMANCE)
            except FailureGroup as exc:  # a BaseExceptionGroup: make it a plain failure
                raise AssertionError(str(exc)) from None

    fuzz()


@pytest.mark.parametrize(("signed", "mode"), [
    (False, GenerationMode.POSITIVE),
    (True, GenerationMode.POSITIVE),
    (True, GenerationMode.NEGATIVE),
], ids=["unsigned", "signed-positive", "signed-negative"])
def test_no_generated_request_gets_a_5xx(api: Api, signed: bool, mode: GenerationMode) -> None:
    failures = []
    for op in _operations(api):
        try:
            _fuzz(api, op, mode, signed)
        except Unsatisfiable:  # nothing to make invalid (no parameters or body): skip
            assert mode is GenerationMode.NEGATIVE
        except Exception as exc:  # report every failing route, not only the first
            failures.append(f"{op.method.upper()} {op.path}: {type(exc).__name__}: {exc}")
    assert not failures, "\n\n".join(failures)
