"""Reasons stored as a message id with parameters, shown in the reader's language.

A job's, workshop's or ledger entry's reason used to be text in the language
that was active when it was written (a Celery worker's, a staff member's), so
an English page showed Chinese reasons. Now the writer says *what* happened,
``Said("job.stopped_by_you")`` or ``Said("ledger.gpu", {"job": 12, ...})``,
and the row keeps the id and the parameters (``reason_id``,
``reason_params``, the :class:`SaidReason` columns) beside an English
rendering in ``reason`` (for search, exports and rows nobody renders). Pages,
the API and notices render it in the reader's language when they show it.
Rows written before keep their text (``reason_id`` empty): the ledger is
append-only and is never rewritten.

Each app defines the messages it writes (``define`` at import of its
``reasons`` module, loaded by its AppConfig so that any process can render
any row). An id that is not defined renders as the stored English text, so
a message removed from the code never breaks a page; an id, once written,
should stay defined.

Parameters are JSON and stay what they measure (µDCU, fen, bytes, ISO
times); a message names how each is formatted for people (``formats``), so
"12.50 DCU" or "2026-05-16 09:00" is decided when read. A parameter may
itself be a reason (``{"id": ..., "params": ...}``, format :data:`REASON`),
e.g. the job's own reason inside its notice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import models
from django.template.defaultfilters import filesizeformat
from django.utils import formats, timezone, translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from aladdin.lib.units import fen_to_yuan_str, format_micro

# --- parameter formats --------------------------------------------------------------


def _dcu(value: Any) -> str:
    return f"{format_micro(int(value))} DCU"


def _dcu_number(value: Any) -> str:
    return format_micro(int(value))


def _yuan(value: Any) -> str:
    return f"¥{fen_to_yuan_str(int(value))}"


def _bytes(value: Any) -> str:
    return str(filesizeformat(int(value)))


def _moment(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value))
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return timezone.localtime(moment)


def _datetime(value: Any) -> str:
    return formats.date_format(_moment(value), "Y-m-d H:i")


def _date(value: Any) -> str:
    # A date param is a plain ISO date ("2026-05-16"): no zone to apply.
    return str(value)[:10]


def _reason(value: Any) -> str:
    if isinstance(value, Mapping):
        return render(str(value.get("id") or ""), value.get("params") or {}, value.get("text", ""))
    return str(value)


DCU = _dcu  # µDCU -> "12.5 DCU"
DCU_NUMBER = _dcu_number  # µDCU -> "12.5" (the template says "DCU")
YUAN = _yuan  # fen -> "¥135.00"
BYTES = _bytes  # bytes -> "1.5 GB"
DATETIME = _datetime  # ISO 8601 -> "2026-05-16 09:00", the reader's zone
DATE = _date  # ISO date
REASON = _reason  # {"id", "params", "text"} -> that reason, rendered


# --- the table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    template: Promise
    formats: Mapping[str, Callable[[Any], str]] = field(default_factory=dict)


_MESSAGES: dict[str, Message] = {}


def define(message_id: str, template: Promise, **formats: Callable[[Any], str]) -> None:
    """Add ``message_id``: a lazy translation with %(name)s parameters, formatted by ``formats``."""
    known = _MESSAGES.get(message_id)
    # Lazy strings compare by their source text: gettext_lazy keeps it in _args.
    if known is not None and getattr(known.template, "_args", None) != getattr(
        template, "_args", None
    ):
        raise ValueError(f"message id {message_id!r} is defined twice with different texts")
    _MESSAGES[message_id] = Message(template, dict(formats))


def defined(message_id: str) -> bool:
    return message_id in _MESSAGES


def render(message_id: str, params: Mapping[str, Any] | None, fallback: str = "") -> str:
    """``message_id`` with ``params`` in the active language; ``fallback`` if it is not defined."""
    message = _MESSAGES.get(message_id) if message_id else None
    if message is None:
        return fallback or message_id
    values = dict(params or {})
    for name, fmt in message.formats.items():
        if values.get(name) is not None:
            try:
                values[name] = fmt(values[name])
            except (TypeError, ValueError):
                pass  # shown as stored rather than failing the page
    try:
        return str(message.template) % values
    except (KeyError, TypeError, ValueError):
        return str(message.template)


@dataclass(frozen=True)
class Said:
    """What happened: a defined message id and its JSON parameters."""

    id: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Fails at the writer, not when a reader renders the row.
        if self.id not in _MESSAGES:
            raise KeyError(f"message id {self.id!r} is not defined")

    def __str__(self) -> str:
        return render(self.id, self.params)

    def english(self) -> str:
        with translation.override("en"):
            return render(self.id, self.params)

    def as_param(self) -> dict[str, Any]:
        """This reason as another message's parameter (format :data:`REASON`)."""
        return {"id": self.id, "params": dict(self.params), "text": self.english()}


Reason = Said | str  # what a writer passes: a message, or text it has no message for


def columns(reason: Reason, prefix: str = "reason") -> dict[str, Any]:
    """The row's columns for ``reason`` (``reason``, ``reason_id``, ``reason_params``).

    Text (a staff member's own words, an agent's English detail, or "") is
    kept as text, with no id.
    """
    if isinstance(reason, Said):
        return {
            prefix: reason.english(),
            f"{prefix}_id": reason.id,
            f"{prefix}_params": dict(reason.params),
        }
    return {prefix: str(reason), f"{prefix}_id": "", f"{prefix}_params": {}}


def shown(text: str, message_id: str, params: Mapping[str, Any] | None) -> str:
    """A stored reason in the reader's language (rows without an id: their own text)."""
    if message_id:
        return render(message_id, params, text)
    return text


def as_param(reason: Reason) -> dict[str, Any]:
    """Any reason as a parameter of another message (format :data:`REASON`)."""
    if isinstance(reason, Said):
        return reason.as_param()
    return {"id": "", "params": {}, "text": str(reason)}


class SaidReason(models.Model):
    """The columns of a reason stored as a message id; the model keeps its own ``reason`` text."""

    reason_id = models.CharField(_("reason message"), max_length=64, blank=True, default="")
    reason_params = models.JSONField(_("reason parameters"), blank=True, default=dict)

    class Meta:
        abstract = True

    @property
    def reason_text(self) -> str:
        """The reason in the active language."""
        return shown(self.reason, self.reason_id, self.reason_params)  # type: ignore[attr-defined]

    @property
    def stored_reason(self) -> Reason:
        """The reason as it was written (to carry it to another row or state)."""
        if self.reason_id and defined(self.reason_id):
            return Said(self.reason_id, self.reason_params)
        return self.reason  # type: ignore[attr-defined]

    def set_reason(self, reason: Reason) -> list[str]:
        """Set the three columns from ``reason``; the field names to save."""
        values = columns(reason)
        for name, value in values.items():
            setattr(self, name, value)
        return list(values)
