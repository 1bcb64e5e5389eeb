"""Domain errors: what a service refuses, and the one way every API answers it.

A service raises a :class:`DomainError` subclass; the error says how an API
answers it (``http_status``, ``error_code``, ``error_detail()``), and
``aladdin.lib.api.exception_handler`` — DRF's handler for every view — turns
it into the API's error body (docs/api.md, Conventions). Views call services
directly: no app keeps its own table from exceptions to responses, and lib
never imports an app to learn their errors.

A DomainError that is also Django's ValidationError and carries fields
(``JobError({"entry": ...})``) is bad input: 400 ``invalid`` with the
fields, like every ValidationError. Plain ValidationErrors (billing's,
storage's, a model's ``full_clean``) are 400 ``invalid`` too.
"""

from __future__ import annotations


class DomainError(Exception):
    """A refusal meant for the user; subclasses say its status and code.

    The default is 409: the request is well-formed, the state of the account
    or of the workload refuses it.
    """

    http_status: int = 409
    error_code: str = "conflict"

    def error_detail(self) -> str:
        """The message the user reads (already translated where it was raised)."""
        # Django's ValidationError keeps a list of messages; its str() is the
        # list's repr.
        messages = getattr(self, "messages", None)
        return " ".join(str(m) for m in messages) if messages is not None else str(self)
