"""The errors a workflow file can cause, each naming the file, the line and the field."""

from __future__ import annotations

from nosgrid.core.errors import InvalidInput


class InvalidWorkflow(InvalidInput):
    """A workflow that cannot run: ``errors`` are ``FILE:LINE: field: message`` lines.

    Raised before anything is uploaded or posted, so a bad file costs nothing.

    >>> InvalidWorkflow(errors=["ci.yml:3: jobs: field required"]).message
    'invalid workflow: ci.yml:3: jobs: field required'
    """

    code = "invalid_workflow"
    http_status = 422
    default_message = "The workflow file is not valid; fix the fields listed in the errors."

    def __init__(self, message: str | None = None, errors: list[str] | None = None) -> None:
        self.errors: list[str] = list(errors or [])
        if message is None and self.errors:
            message = "invalid workflow: " + "; ".join(self.errors)
        super().__init__(message)
        if self.errors:
            self.details["errors"] = self.errors
