"""Recording job transitions: the job row, the journal entry of its postings, its events.

The base of the job use cases (``jobs``, ``audit_runs``, ``verification`` all record
through it, and it imports none of them): a rule returns a
:class:`~nosgrid.core.jobs.state.Transition`; :func:`record` books its postings as one
journal entry, saves the job and publishes its events on the unit of work, whose handlers
(``coordinator/bootstrap.py``) pay out, distribute fees and notify.
"""

from __future__ import annotations

import secrets

from nosgrid.core.errors import Forbidden
from nosgrid.core.events import Event
from nosgrid.core.jobs import state as rules
from nosgrid.core.jobs.state import Job, Transition
from nosgrid.store.db import UnitOfWork


def new_job_id() -> str:
    """A random job id (24 hex characters)."""
    return secrets.token_hex(12)


def record(uow: UnitOfWork, tr: Transition, *, kind: str, new: bool = False) -> Job:
    """Persist a transition: its postings as one ``kind`` journal entry, the job row, and
    its events (each citing that entry), published in this transaction."""
    events: tuple[Event, ...] = tr.events
    if tr.postings:
        meta = {"events": [e.name for e in tr.events], "state": tr.job.state.value}
        entry = uow.ledger.append(kind, tr.job.id, tr.events[-1].at if tr.events else 0,
                                  tr.postings, meta)
        events = tuple(e.booked(entry) for e in events)
    if new:
        uow.jobs.add(tr.job)
    else:
        uow.jobs.save(tr.job)
    uow.publish(*events)
    return tr.job


def get_job_for(uow: UnitOfWork, job_id: str, actor: str) -> Job:
    """Load a job that ``actor`` may see: its client or its node."""
    job = uow.jobs.get(job_id)
    if actor not in (job.client, job.node):
        raise Forbidden(f"job {job_id} belongs to another key")
    return job


def assign_to(uow: UnitOfWork, job: Job, node_id: str, now: int) -> Job:
    """Assign ``job`` to ``node_id``; the node may then fetch the job's input blobs."""
    uow.nodes.set(node_id, waiting_since=None)
    for sha in job.terms.inputs if job.terms else ():
        uow.blobs.grant(sha, node_id)
    return record(uow, rules.assign(job, node_id, now), kind="job.assigned")
