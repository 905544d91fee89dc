"""How the node agent reads each coordinator answer: ask again, drop the report, or neither."""

from __future__ import annotations

import pytest

from nosgrid.core import errors as e
from nosgrid.node.agent import is_transient, not_ours_any_more


@pytest.mark.parametrize(("err", "transient", "not_ours"), [
    (e.Unavailable(), True, False),                  # transport error, 503
    (e.SettlementFailed(), True, False),
    (e.NosgridError("the coordinator answered HTTP 502"), True, False),  # a proxy's page
    (e.LedgerCorrupt(), True, False),                # any 5xx
    (e.RateLimited(), True, False),
    (e.ReplayedNonce(), True, False),                # the next try signs a fresh nonce
    (e.IllegalTransition("cannot complete job j: it is settled"), False, True),
    (e.Conflict(), False, True),
    (e.Forbidden("job j is not assigned to this node"), False, True),
    (e.JobNotFound(), False, True),
    (e.InvalidInput("the result is larger than 256 kB"), False, False),
    (e.PayloadTooLarge(), False, False),
    (e.BadSignature(), False, False),
])
def test_each_answer_is_read_one_way(err: e.NosgridError, transient: bool,
                                     not_ours: bool) -> None:
    assert is_transient(err) is transient
    assert not_ours_any_more(err) is not_ours


def test_an_error_rebuilt_from_an_answer_reads_the_same() -> None:
    """What the SDK raises is rebuilt from the body; the reading must not depend on it."""
    rebuilt = e.NosgridError.from_dict({"code": "illegal_transition", "message": "settled"})
    assert not_ours_any_more(rebuilt) and not is_transient(rebuilt)
    assert is_transient(e.NosgridError.from_dict({"code": "internal", "message": "boom"}))
