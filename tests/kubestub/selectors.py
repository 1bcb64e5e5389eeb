"""Label and field selectors and resource quantities, as the API server parses them.

A selector compiles once into a predicate, so a watch with a selector costs a
few dict look-ups per event. Quantities are exact (``Fraction``) and print in
Kubernetes' canonical form (``Quantity.String()``): the quota's 403 message
and ``status.used`` are compared by clients as text, so ``1536Mi`` must not
come out as ``1.5Gi``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from fractions import Fraction

__all__ = [
    "Quantity",
    "SelectorError",
    "add_quantities",
    "parse_field_selector",
    "parse_label_selector",
    "parse_quantity",
]


class SelectorError(ValueError):
    """A selector (or quantity) the API server would refuse with 400 BadRequest."""


Predicate = Callable[[Mapping[str, str]], bool]


def _always(_: Mapping[str, str]) -> bool:
    return True


# --- label selectors -------------------------------------------------------------------------

_KEY = re.compile(
    r"^([A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _split_top_level(text: str) -> list[str]:
    """Split on the commas that are not inside an ``in (...)`` set."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unable to parse requirement: unbalanced ')' in {text!r}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise SelectorError(f"unable to parse requirement: unbalanced '(' in {text!r}")
    parts.append(text[start:])
    return parts


def _check_key(key: str) -> str:
    if not _KEY.match(key):
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r}")
    return key


def _check_value(value: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(f"unable to parse requirement: invalid label value: {value!r}")
    return value


_SET_RE = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")
_CMP_RE = re.compile(r"^\s*([^=!<>\s]+)\s*(==|=|!=|<|>)\s*(\S*)\s*$")


def _requirement(text: str) -> Predicate:
    text = text.strip()
    if not text:
        raise SelectorError("unable to parse requirement: found '', expected: identifier")
    m = _SET_RE.match(text)
    if m:
        key, op, values = _check_key(m.group(1)), m.group(2), m.group(3)
        members = frozenset(_check_value(v.strip()) for v in values.split(","))
        if op == "in":
            return lambda labels: labels.get(key) in members
        return lambda labels: labels.get(key) not in members
    m = _CMP_RE.match(text)
    if m:
        key, op, value = _check_key(m.group(1)), m.group(2), m.group(3)
        if op in ("=", "=="):
            _check_value(value)
            return lambda labels: labels.get(key) == value
        if op == "!=":
            _check_value(value)
            return lambda labels: labels.get(key) != value
        try:
            bound = int(value)
        except ValueError:
            raise SelectorError(
                f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {value!r}"
            ) from None

        def _numeric(labels: Mapping[str, str]) -> int | None:
            try:
                return int(labels[key])
            except (KeyError, ValueError):
                return None

        if op == ">":
            return lambda labels: (n := _numeric(labels)) is not None and n > bound
        return lambda labels: (n := _numeric(labels)) is not None and n < bound
    if text.startswith("!"):
        key = _check_key(text[1:].strip())
        return lambda labels: key not in labels
    key = _check_key(text)
    return lambda labels: key in labels


def parse_label_selector(selector: str | None) -> Predicate:
    """Compile ``a=b,c!=d,e in (x,y),f notin (z),g,!h,n>3`` into a predicate on a labels dict."""
    if not selector or not selector.strip():
        return _always
    reqs = [_requirement(part) for part in _split_top_level(selector)]
    if len(reqs) == 1:
        return reqs[0]
    return lambda labels: all(req(labels) for req in reqs)


# --- field selectors -------------------------------------------------------------------------


def parse_field_selector(selector: str | None, allowed: frozenset[str] | set[str]) -> Predicate:
    """Compile ``metadata.name=x,status.phase!=Failed`` into a predicate on an object's field view.

    Only the fields the resource supports are accepted; the API server answers any other
    with 400 ``field label not supported``.
    """
    if not selector or not selector.strip():
        return _always
    reqs: list[Predicate] = []
    for part in selector.split(","):
        part = part.strip()
        if not part:
            continue
        for op in ("!=", "==", "="):
            if op in part:
                field, value = part.split(op, 1)
                break
        else:
            raise SelectorError(f"invalid selector: '{selector}'; can't understand '{part}'")
        field, value = field.strip(), value.strip()
        if field not in allowed:
            raise SelectorError(f"field label not supported: {field}")
        if op == "!=":
            reqs.append(lambda fields, f=field, v=value: fields.get(f, "") != v)
        else:
            reqs.append(lambda fields, f=field, v=value: fields.get(f, "") == v)
    if not reqs:
        return _always
    if len(reqs) == 1:
        return reqs[0]
    return lambda fields: all(req(fields) for req in reqs)


# --- quantities ------------------------------------------------------------------------------

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY_SUFFIX = {v: k for k, v in _BINARY.items()}
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)$")
_EXPONENT = re.compile(r"^[eE]([+-]?[0-9]+)$")
_GIGA = 10**9


class Quantity:
    """An exact resource quantity (integer nano-units) that remembers the format it was written in.

    Immutable: parsed quantities are cached and shared.
    """

    __slots__ = ("nanos", "format")

    def __init__(
        self, value: Fraction | int, format: str = DECIMAL_SI, *, nanos: int | None = None
    ):
        if nanos is None:
            # The API server keeps at most nano precision and rounds up (0.1n -> 1n).
            scaled = Fraction(value) * _GIGA
            nanos = -((-scaled.numerator) // scaled.denominator)
        self.nanos = nanos
        self.format = format

    @property
    def value(self) -> Fraction:
        return Fraction(self.nanos, _GIGA)

    def __add__(self, other: Quantity) -> Quantity:
        fmt = other.format if self.nanos == 0 else self.format
        return Quantity(0, fmt, nanos=self.nanos + other.nanos)

    def __sub__(self, other: Quantity) -> Quantity:
        return Quantity(0, self.format, nanos=self.nanos - other.nanos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.nanos == other.nanos

    def __hash__(self) -> int:
        return hash(self.nanos)

    def __lt__(self, other: Quantity) -> bool:
        return self.nanos < other.nanos

    def __le__(self, other: Quantity) -> bool:
        return self.nanos <= other.nanos

    def __gt__(self, other: Quantity) -> bool:
        return self.nanos > other.nanos

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"

    def __str__(self) -> str:
        nanos = self.nanos
        if nanos == 0:
            return "0"
        sign = "-" if nanos < 0 else ""
        nanos = abs(nanos)
        fmt = self.format
        whole, fraction = divmod(nanos, _GIGA)
        if fmt == BINARY_SI and (whole < 1024 or fraction):
            fmt = DECIMAL_SI
        if fmt == BINARY_SI:
            n, power = whole, 0
            while power < 6 and n % 1024 == 0:
                n //= 1024
                power += 1
            return f"{sign}{n}{_BINARY_SUFFIX.get(power, '')}"
        n, exp = nanos, -9
        while n % 1000 == 0 and (fmt == DECIMAL_EXPONENT or exp < 18):
            n //= 1000
            exp += 3
        if fmt == DECIMAL_EXPONENT:
            return f"{sign}{n}" + (f"e{exp}" if exp else "")
        return f"{sign}{n}{_DECIMAL_SUFFIX[exp]}"


def parse_quantity(text: str | int | float) -> Quantity:
    """``500m``, ``2``, ``4Gi``, ``512Mi``, ``1e3``, ``1.5G`` -> an exact Quantity."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        raise SelectorError(f"quantities must match the regular expression: {text!r}")
    return _parse_quantity(text.strip())


@functools.lru_cache(maxsize=4096)
def _parse_quantity(text: str) -> Quantity:
    m = _QUANTITY.match(text)
    if not m:
        raise SelectorError(
            f"quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}"
        )
    number, suffix = Fraction(m.group(1)), m.group(2)
    if suffix in _BINARY:
        return Quantity(number * 1024 ** _BINARY[suffix], BINARY_SI)
    if suffix in _DECIMAL:
        return Quantity(number * Fraction(10) ** _DECIMAL[suffix], DECIMAL_SI)
    e = _EXPONENT.match(suffix)
    if e:
        return Quantity(number * Fraction(10) ** int(e.group(1)), DECIMAL_EXPONENT)
    raise SelectorError(f"unable to parse quantity's suffix: {text!r}")


def add_quantities(into: dict[str, Quantity], more: Mapping[str, Quantity]) -> None:
    """Sum ``more`` into ``into`` key by key (quota usage arithmetic)."""
    for key, q in more.items():
        have = into.get(key)
        into[key] = q if have is None else have + q
