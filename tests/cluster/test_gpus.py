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


class FakeNvml:
    """pynvml's functions for a host with the given cards ((memory MiB, name, uuid) each)."""

    def __init__(self, cards, *, init_error=None):
        self.cards = cards
        self.init_error = init_error
        self.shut_down = False

    def install(self, monkeypatch):
        from types import SimpleNamespace

        import pynvml

        def init():
            if self.init_error is not None:
                raise pynvml.NVMLError(self.init_error)

        def shutdown():
            self.shut_down = True

        for name, fn in {
            "nvmlInit": init,
            "nvmlShutdown": shutdown,
            "nvmlDeviceGetCount": lambda: len(self.cards),
            "nvmlDeviceGetHandleByIndex": lambda i: i,
            "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(total=self.cards[h][0] * 2**20),
            "nvmlDeviceGetMinorNumber": lambda h: h,
            "nvmlDeviceGetName": lambda h: self.cards[h][1],
            "nvmlDeviceGetUUID": lambda h: self.cards[h][2],
        }.items():
            monkeypatch.setattr(pynvml, name, fn)
        return self


def test_nvml_cards_are_found_and_classed_by_memory(monkeypatch):
    nvml = FakeNvml(
        [(143771, "NVIDIA H200", "GPU-aaaa"), (40960, "NVIDIA A100-SXM4-40GB", "GPU-bbbb")]
    ).install(monkeypatch)

    cards = gpus.host_cards()

    assert [(c.index, c.model, c.name, c.uuid, c.virtual) for c in cards] == [
        ("0", "80g", "NVIDIA H200", "GPU-aaaa", False),
        ("1", "40g", "NVIDIA A100-SXM4-40GB", "GPU-bbbb", False),
    ]
    assert nvml.shut_down


def test_without_nvml_the_cards_come_from_nvidia_smi_or_are_virtual(monkeypatch):
    import pynvml

    # given a host whose NVML library is missing (the development machines')
    FakeNvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND).install(monkeypatch)
    # then nvidia-smi is asked instead
    monkeypatch.setattr(gpus, "_smi_cards", lambda: gpus.parse_nvidia_smi(SMI))
    assert [c.uuid for c in gpus.host_cards()] == ["GPU-aaaa", "GPU-bbbb"]
    # and with neither, auto falls back to the virtual cards
    monkeypatch.setattr(gpus, "_smi_cards", lambda: [])
    assert all(c.virtual for c in gpus.discover("auto"))
