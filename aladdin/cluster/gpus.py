"""The local backend's GPU cards: detection and exclusive allocation (SPEC §7, §9).

The agent owns one :class:`Inventory`. Cards are found through NVML (the
driver's ``libnvidia-ml.so.1``, through NVIDIA's own bindings, the
``nvidia-ml-py`` package, module ``pynvml``) or, failing that,
``nvidia-smi``; each is classed as a "40g" or "80g" card by its memory.
A host with no GPU (development machines, CI) gets a configured set of
*virtual* cards instead — by default 4 × 40G and 4 × 80G — so that
admission, allocation, metering and logs all work; only CUDA does not.

``ALADDIN_LOCAL_GPUS`` chooses:

- ``auto`` (default): the host's cards if any, else the default virtual set;
- ``none``: no cards (GPU jobs cannot start here);
- ``virtual:40g=4,80g=4``: exactly these virtual cards;
- ``nvidia``: the host's cards, and an error if there are none.

A card is handed to one workload at a time: ``CUDA_VISIBLE_DEVICES`` names it
(its UUID where known, else its index) and only its device node is bound
into the sandbox, so two jobs never share a card.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pynvml

DEFAULT_VIRTUAL = {"40g": 4, "80g": 4}
# Cards with more memory than this are "80g" cards (A100/H100 80G, H200…).
SMALL_CARD_MAX_MIB = 48 * 1024


class GpuConfigError(ValueError):
    """ALADDIN_LOCAL_GPUS is not understood, or asks for cards the host lacks."""


class NoFreeCards(Exception):  # noqa: N818 - reads as the condition
    """Not enough free cards of a model right now (try again later)."""


@dataclass(frozen=True)
class Card:
    """One card: ``index`` is its device number (``/dev/nvidia<index>``)."""

    index: str
    model: str  # "40g" | "80g"
    memory_mib: int
    name: str
    uuid: str = ""
    virtual: bool = False

    @property
    def visible_id(self) -> str:
        """What CUDA_VISIBLE_DEVICES should say for this card."""
        return self.uuid or self.index


def model_for(memory_mib: int) -> str:
    return "40g" if memory_mib <= SMALL_CARD_MAX_MIB else "80g"


def _nvml_cards() -> list[Card]:
    """The host's cards through NVML (nvidia-ml-py); [] when there is no driver or no card."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no libnvidia-ml.so.1 (no driver), or it cannot start
        return []
    cards = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                mib = pynvml.nvmlDeviceGetMemoryInfo(handle).total // (1024 * 1024)
            except pynvml.NVMLError:
                continue  # a card that fell off the bus is not one we can hand out
            cards.append(
                Card(
                    # The device node is /dev/nvidia<minor>; the index is its usual value.
                    index=str(_nvml_or(pynvml.nvmlDeviceGetMinorNumber, handle, i)),
                    model=model_for(mib),
                    memory_mib=mib,
                    name=_nvml_or(pynvml.nvmlDeviceGetName, handle, ""),
                    uuid=_nvml_or(pynvml.nvmlDeviceGetUUID, handle, ""),
                )
            )
    except pynvml.NVMLError:
        return []
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    return cards


def _nvml_or(query: Callable[[Any], Any], handle: Any, default: Any) -> Any:
    """``query(handle)``, or ``default`` when this driver cannot answer it."""
    try:
        return query(handle)
    except pynvml.NVMLError:
        return default


def parse_nvidia_smi(text: str) -> list[Card]:
    """Cards from ``nvidia-smi --query-gpu=index,uuid,memory.total,name --format=csv,noheader,nounits``."""
    cards = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",", 3)]
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        index, uuid, memory, name = parts
        try:
            mib = int(float(memory))
        except ValueError:
            continue
        cards.append(Card(index=index, model=model_for(mib), memory_mib=mib, name=name, uuid=uuid))
    return cards


def _smi_cards() -> list[Card]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,uuid,memory.total,name", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(out)


def host_cards() -> list[Card]:
    """The host's NVIDIA cards (NVML, else nvidia-smi); [] when there are none."""
    return _nvml_cards() or _smi_cards()


def virtual_cards(counts: dict[str, int]) -> list[Card]:
    cards, index = [], 0
    for model in sorted(counts):
        for _ in range(counts[model]):
            mib = 40 * 1024 if model == "40g" else 80 * 1024
            cards.append(
                Card(
                    index=str(index),
                    model=model,
                    memory_mib=mib,
                    name=f"virtual {model.upper()}",
                    virtual=True,
                )
            )
            index += 1
    return cards


def parse_config(value: str) -> tuple[str, dict[str, int]]:
    """``ALADDIN_LOCAL_GPUS`` → (mode, virtual counts). Raises GpuConfigError."""
    value = (value or "auto").strip().lower()
    if value in {"auto", "none", "nvidia"}:
        return value, dict(DEFAULT_VIRTUAL)
    if value.startswith("virtual:") or value == "virtual":
        counts: dict[str, int] = {}
        spec = value.partition(":")[2]
        for item in filter(None, (p.strip() for p in spec.split(","))):
            model, _sep, n = item.partition("=")
            if model not in {"40g", "80g"} or not n.isdigit():
                raise GpuConfigError(
                    f"ALADDIN_LOCAL_GPUS: expected virtual:40g=N,80g=M, got {value!r}"
                )
            counts[model] = int(n)
        return "virtual", counts or dict(DEFAULT_VIRTUAL)
    raise GpuConfigError(
        f"ALADDIN_LOCAL_GPUS must be auto, none, nvidia or virtual:40g=N,80g=M, got {value!r}"
    )


def discover(value: str) -> list[Card]:
    mode, counts = parse_config(value)
    if mode == "none":
        return []
    if mode == "virtual":
        return virtual_cards(counts)
    cards = host_cards()
    if cards:
        return cards
    if mode == "nvidia":
        raise GpuConfigError("ALADDIN_LOCAL_GPUS=nvidia, but NVML and nvidia-smi found no GPU")
    return virtual_cards(counts)


class Inventory:
    """Which card belongs to which workload; thread-safe."""

    def __init__(self, cards: list[Card]):
        self.cards = list(cards)
        self._owner: dict[str, str] = {}  # card index → workload name
        self._lock = threading.Lock()

    @property
    def virtual(self) -> bool:
        return bool(self.cards) and all(c.virtual for c in self.cards)

    def allocate(self, name: str, wanted: dict[str, int]) -> list[Card]:
        """Give ``name`` the cards it asks for ({model: count}), all or none.

        A name that already holds cards gets the same ones (a retried start).
        Raises NoFreeCards with the numbers.
        """
        with self._lock:
            held = [c for c in self.cards if self._owner.get(c.index) == name]
            if held:
                return held
            chosen: list[Card] = []
            for model, count in sorted(wanted.items()):
                if count <= 0:
                    continue
                of_model = [c for c in self.cards if c.model == model]
                free = [c for c in of_model if c.index not in self._owner]
                if len(free) < count:
                    raise NoFreeCards(
                        f"no free {model.upper()} card on this host: {count} asked, "
                        f"{len(free)} of {len(of_model)} free; the job starts when one is released"
                    )
                chosen += free[:count]
            for card in chosen:
                self._owner[card.index] = name
            return chosen

    def release(self, name: str) -> None:
        with self._lock:
            for index in [i for i, owner in self._owner.items() if owner == name]:
                del self._owner[index]

    def summary(self) -> dict:
        with self._lock:
            by_model: dict[str, dict[str, int]] = {}
            for card in self.cards:
                entry = by_model.setdefault(card.model, {"total": 0, "free": 0})
                entry["total"] += 1
                if card.index not in self._owner:
                    entry["free"] += 1
            return {"virtual": self.virtual, "models": by_model}
