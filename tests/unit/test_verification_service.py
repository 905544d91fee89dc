"""The pure helpers verification relies on: job terms, output comparison, verdicts."""

from __future__ import annotations

import io

import numpy as np
import pytest

from nosgrid.core.errors import InvalidJobSpec
from nosgrid.core.jobs.load import parse_job_definition
from nosgrid.core.jobs.spec import JobDefinition
from nosgrid.core.jobs.terms import from_json, terms_of, to_json
from nosgrid.core.verification import Tolerance, Verdict, compare_results, output_hashes, resolve


def res(**files: str) -> dict[str, object]:
    return {"outputs": [{"path": f"/outputs/{k}", "sha256": v} for k, v in files.items()]}


def npy(values: list[float]) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(values))
    return buf.getvalue()


def definition(**nosgrid: object) -> JobDefinition:
    return parse_job_definition({
        "version": "0.1", "type": "container", "meta": {"nosgrid": nosgrid},
        "ops": [{"type": "container/run", "id": "main", "args": {"image": "busybox"}}]})


def test_job_terms_are_read_once_from_the_definition_and_the_request() -> None:
    t = terms_of(definition(verification="deterministic"), market="cpu", max_timeout=300)
    assert (t.verification, t.replicas, t.timeout, t.max_price) == ("deterministic", 1, 300, None)
    t = terms_of(definition(verification="tolerance", replicas=3, rel_eps=0.5, timeout=40,
                            max_price="2"), market="cpu", max_timeout=600)
    assert (t.verification, t.replicas, t.tolerance, t.timeout, t.max_price) == (
        "tolerance", 3, Tolerance(rel_eps=0.5), 40, 2_000_000)
    # the request wins over the definition
    t = terms_of(definition(timeout=40, max_price="2"), market="gpu", max_timeout=600,
                 timeout=90, max_price=5)
    assert (t.market, t.timeout, t.max_price, t.verified) == ("gpu", 90, 5, False)
    assert from_json(to_json(t)) == t


def test_terms_that_make_no_sense_are_refused_with_the_definition() -> None:
    with pytest.raises(InvalidJobSpec, match="replicas > 1 needs verification"):
        definition(replicas=3)
    with pytest.raises(InvalidJobSpec, match="replicas"):
        definition(replicas=99, verification="tolerance")
    with pytest.raises(InvalidJobSpec, match="verification"):
        definition(verification="bogus")


def test_output_hashes_skips_malformed_entries() -> None:
    assert output_hashes({"outputs": [{"path": "/a", "sha256": "x"}, {"path": "/b"}, 3]}) == \
        {"/a": "x"}
    assert output_hashes({}) == {}


def test_deterministic_compares_hashes_only() -> None:
    def never(_sha: str) -> bytes:
        raise AssertionError("deterministic must not read blobs")

    assert compare_results("deterministic", res(o="a"), res(o="a"), Tolerance(), never).match
    c = compare_results("deterministic", res(o="a"), res(o="b"), Tolerance(), never)
    assert not c.match and "differ" in c.reason
    assert not compare_results("deterministic", res(o="a"), res(p="a"), Tolerance(), never).match


def test_tolerance_reads_json_and_npy_blobs() -> None:
    blobs = {"j1": b"[1.0, 2.0]", "j2": b"[1.0000000001, 2.0]", "j3": b"[1.1, 2.0]",
             "n1": npy([1.0, 2.0]), "n2": npy([1.0 + 1e-12, 2.0])}
    read = blobs.__getitem__
    tol = Tolerance()
    assert compare_results("tolerance", res(o="j1"), res(o="j2"), tol, read).match
    assert not compare_results("tolerance", res(o="j1"), res(o="j3"), tol, read).match
    assert compare_results("tolerance", res(o="n1"), res(o="n2"), tol, read).match
    assert not compare_results("tolerance", res(o="n1"), res(o="j1"), tol, read).match
    assert compare_results("tolerance", res(o="j3"), res(o="j1"), Tolerance(0.2, 0), read).match


def test_resolve_needs_a_unanimous_panel() -> None:
    good, bad, other = res(o="g"), res(o="b"), res(o="x")
    t, r = Tolerance(), bytes.fromhex
    assert resolve("deterministic", good, good, [], t, r).verdict is Verdict.AGREED
    assert resolve("deterministic", bad, good, [good, good], t, r).verdict is Verdict.NODE_WRONG
    assert resolve("deterministic", good, bad, [good], t, r).verdict is Verdict.AUDITOR_WRONG
    split = resolve("deterministic", bad, good, [good, bad], t, r)
    assert split.verdict is Verdict.INCONCLUSIVE and (split.votes_first, split.votes_audit) == \
        (1, 1)
    assert resolve("deterministic", bad, good, [other], t, r).verdict is Verdict.INCONCLUSIVE
    assert resolve("deterministic", bad, good, [], t, r).verdict is Verdict.INCONCLUSIVE
