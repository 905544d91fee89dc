"""Jobs: the lifecycle state machine (``state``) and the job definition (``spec``)."""

from nosgrid.core.jobs.state import (
    ENDED,
    OPEN,
    TERMINAL,
    TRANSITIONS,
    Job,
    JobState,
    Outcome,
    Payout,
    Transition,
    payout,
)

__all__ = ["ENDED", "OPEN", "TERMINAL", "TRANSITIONS", "Job", "JobState", "Outcome", "Payout",
           "Transition", "payout"]
