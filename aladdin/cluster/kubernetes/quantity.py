"""Kubernetes resource quantities ("500m", "2", "4Gi", "1e3") to and from the driver's units."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


def parse(text: str | int | float) -> Decimal:
    """A quantity's value in base units (cores, bytes, items). Raises ValueError."""
    if isinstance(text, int | float):
        return Decimal(str(text))
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:
        raise ValueError(f"not a Kubernetes quantity: {text!r}") from exc
    return number * _SUFFIXES[match.group(2)]


def millicores(text: str | int | float) -> int:
    """CPU in millicores, rounded up (as the API server rounds a request)."""
    return math.ceil(parse(text) * 1000)


def mebibytes(text: str | int | float) -> int:
    """Memory in MiB, rounded up."""
    return math.ceil(parse(text) / 2**20)


def count(text: str | int | float) -> int:
    """A count (GPUs, pods)."""
    return math.ceil(parse(text))


def cpu(millicores_: int) -> str:
    """``2000`` -> "2", ``500`` -> "500m"."""
    if millicores_ % 1000 == 0:
        return str(millicores_ // 1000)
    return f"{millicores_}m"


def memory(mib: int) -> str:
    """``4096`` -> "4Gi", ``1536`` -> "1536Mi"."""
    if mib % 1024 == 0:
        return f"{mib // 1024}Gi"
    return f"{mib}Mi"
