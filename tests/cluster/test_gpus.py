"""The local backend's GPU cards: detection, configuration, exclusive allocation."""

from __future__ import annotations

import pytest

from aladdin.cluster import gpus

SMI = """0, GPU-aaaa, 143771, NVIDIA H200
1, GPU-bbbb, 40960, NVIDIA A100-SXM4-40GB
garbage line
"""


def test_nvidia_smi_output_is_classed_by_memory():
    cards = gpus.parse_nvidia_smi(SMI)
    assert [(c.index, c.model, c.uuid) for c in cards] == [
        ("0", "80g", "GPU-aaaa"),
        ("1", "40g", "GPU-bbbb"),
    ]
    # CUDA_VISIBLE_DEVICES names a card by UUID where known: stable across reorderings.
    assert cards[0].visible_id == "GPU-aaaa"


def test_without_a_gpu_auto_gives_four_40g_and_four_80g_virtual_cards(monkeypatch):
    monkeypatch.setattr(gpus, "host_cards", lambda: [])
    cards = gpus.discover("auto")
    assert sorted(c.model for c in cards) == ["40g"] * 4 + ["80g"] * 4
    assert all(c.virtual for c in cards)
    assert gpus.discover("none") == []
    assert [c.model for c in gpus.discover("virtual:80g=1")] == ["80g"]
    with pytest.raises(gpus.GpuConfigError):
        gpus.discover("nvidia")


def test_a_host_with_cards_uses_them(monkeypatch):
    monkeypatch.setattr(gpus, "host_cards", lambda: gpus.parse_nvidia_smi(SMI))
    assert [c.virtual for c in gpus.discover("auto")] == [False, False]


@pytest.mark.parametrize("value", ["virtual:90g=1", "virtual:40g=x", "lots"])
def test_a_bad_configuration_is_refused(value):
    with pytest.raises(gpus.GpuConfigError):
        gpus.parse_config(value)


def test_cards_are_exclusive_all_or_nothing_and_released():
    inventory = gpus.Inventory(gpus.virtual_cards({"40g": 1, "80g": 2}))
    a = inventory.allocate("job-1", {"80g": 2})
    assert len(a) == 2
    assert inventory.allocate("job-1", {"80g": 2}) == a  # a retried start gets the same cards
    with pytest.raises(gpus.NoFreeCards) as busy:
        inventory.allocate("job-2", {"80g": 1, "40g": 1})
    assert "1 asked, 0 of 2 free" in str(busy.value)
    # All or nothing: the free 40G card was not taken by the refused request.
    assert inventory.summary()["models"]["40g"]["free"] == 1
    inventory.release("job-1")
    assert len(inventory.allocate("job-2", {"80g": 1, "40g": 1})) == 2
