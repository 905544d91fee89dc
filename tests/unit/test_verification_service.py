"""The verification service's pure helpers: spec terms, output comparison, verdicts."""

from __future__ import annotations

import io

import numpy as np

from nosgrid.coordinator.services.comparison import spec_terms
from nosgrid.core.verification import Tolerance, Verdict, compare_results, output_hashes, resolve


def res(**files: str) -> dict[str, object]:
    return {"outputs": [{"path": f"/outputs/{k}", "sha256": v} for k, v in files.items()]}


def npy(values: list[float]) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(values))
    return buf.getvalue()


def test_spec_terms_defaults_and_garbage() -> None:
    assert spec_terms('{"meta": {"nosgrid": {"verification": "deterministic"}}}')[0] == \
        "deterministic"
    # replicas need something to compare, and stay within the limit
    assert spec_terms('{"meta": {"nosgrid": {"replicas": 3}}}') == ("none", Tolerance(), 1)
    assert spec_terms('{"meta": {"nosgrid": {"replicas": 3, "verification": "tolerance"}}}'
                      ) == ("tolerance", Tolerance(), 3)
    assert spec_terms('{"meta": {"nosgrid": {"replicas": 99, "verification": "tolerance"}}}'
                      )[2] == 1
    assert spec_terms("not json")[0] == "none"
    assert spec_terms('{"meta": {"nosgrid": {"verification": "bogus"}}}')[0] == "none"


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
