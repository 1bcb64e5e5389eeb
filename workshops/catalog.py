"""Catalog data of the workshops app (SPEC §6): images, presets, platform env defaults.

``manage.py load_catalog`` calls :func:`load`. Idempotent: it creates what is
missing and never overwrites a row staff have edited.
"""

from __future__ import annotations

from aladdin.workloads.models import Image, PlatformEnvVar

from .models import ResourcePreset

_EXTRAS = (
    "datasets, transformers, scikit-learn, peft, tiktoken, blobfile, sentencepiece, "
    "protobuf, deepspeed"
)
# The extras the manual lists without versions, pinned to releases of each
# torch's time (a recipe pins everything, or two builds could differ).
_EXTRAS_2_5 = [
    "datasets==3.1.0",
    "transformers==4.46.3",
    "scikit-learn==1.5.2",
    "peft==0.13.2",
    "tiktoken==0.8.0",
    "blobfile==3.0.0",
    "sentencepiece==0.2.0",
    "protobuf==5.28.3",
    "deepspeed==0.15.4",
]
_EXTRAS_2_6 = [
    "datasets==3.2.0",
    "transformers==4.48.3",
    "scikit-learn==1.6.1",
    "peft==0.14.0",
    "tiktoken==0.8.0",
    "blobfile==3.0.0",
    "sentencepiece==0.2.0",
    "protobuf==5.29.3",
    "deepspeed==0.16.3",
]
_LLAMA_FACTORY = [
    "llamafactory==0.9.3",
    "peft==0.15.1",
    "trl==0.9.6",
    "accelerate==1.6.0",
    "transformers==4.51.3",
    "torch==2.7.0",
]

# (name, tag, contents shown to users, recipe). The recipe is SPEC §6's table
# made exact: Python version, pinned packages, Debian packages, conda, CUDA,
# userland. Containers for the Kubernetes backend are built from the same
# recipe (manage.py image_dockerfile) and pushed as ``container_image``.
IMAGES = [
    (
        "torch",
        "2.5.1-cu124",
        f"torch 2.5.1, torchvision 0.20.1, torchaudio 2.5.1, CUDA 12.4; {_EXTRAS}",
        {
            "python_version": "3.11",
            "packages": ["torch==2.5.1", "torchvision==0.20.1", "torchaudio==2.5.1", *_EXTRAS_2_5],
            "cuda": "12.4",
        },
    ),
    (
        "torch",
        "2.6.0-cu124",
        f"torch 2.6.0, torchvision 0.21.0, torchaudio 2.6.0, CUDA 12.4; {_EXTRAS}",
        {
            "python_version": "3.11",
            "packages": ["torch==2.6.0", "torchvision==0.21.0", "torchaudio==2.6.0", *_EXTRAS_2_6],
            "cuda": "12.4",
        },
    ),
    (
        "jupyter-lab",
        "4.4.2",
        "jupyterlab 4.4.2, torch 2.5.1+cu124, CUDA 12.4, conda",
        {
            "python_version": "3.11",
            "packages": ["jupyterlab==4.4.2", "torch==2.5.1"],
            "cuda": "12.4",
            "conda": True,
        },
    ),
    (
        "llama-factory",
        "v0.9.3.dev0-cuda12.4-cudnn9-devel",
        "llamafactory 0.9.3, peft 0.15.1, trl 0.9.6, accelerate 1.6.0, transformers 4.51.3, "
        "torch 2.7.0, CUDA 12.6, conda",
        {"python_version": "3.11", "packages": _LLAMA_FACTORY, "cuda": "12.6", "conda": True},
    ),
    (
        "llama-factory",
        "v0.9.3.dev0-cuda12.1-cudnn9-devel",
        "llamafactory 0.9.3, peft 0.15.1, trl 0.9.6, accelerate 1.6.0, transformers 4.51.3, "
        "torch 2.7.0, CUDA 12.1, conda",
        {"python_version": "3.11", "packages": _LLAMA_FACTORY, "cuda": "12.1", "conda": True},
    ),
    ("python", "3.10", "plain Python", {"python_version": "3.10"}),
    ("python", "3.11", "plain Python", {"python_version": "3.11"}),
    ("python", "3.12", "plain Python", {"python_version": "3.12"}),
    ("python", "3.13", "plain Python", {"python_version": "3.13"}),
    ("ubuntu", "22.04", "plain Ubuntu", {"base_os": "ubuntu-22.04"}),
]

# Where the Kubernetes backend's container images live; staff may edit each.
CONTAINER_REGISTRY = "registry.aladdin.local/images"


def recipe_fields(name: str, tag: str, recipe: dict) -> dict:
    """The model fields of a catalog image's recipe (every field, defaults filled in)."""
    return {
        "python_version": recipe.get("python_version", ""),
        "packages": list(recipe.get("packages", [])),
        "apt_packages": list(recipe.get("apt_packages", [])),
        "conda": bool(recipe.get("conda", False)),
        "cuda": recipe.get("cuda", ""),
        "base_os": recipe.get("base_os", "debian-12"),
        "container_image": f"{CONTAINER_REGISTRY}/{name}:{tag}",
    }


# (name, cpu millicores, memory MiB, recommended)
PRESETS = [
    ("2C/4G", 2000, 4 * 1024, False),
    ("4C/16G", 4000, 16 * 1024, True),
    ("8C/32G", 8000, 32 * 1024, False),
    ("16C/64G", 16000, 64 * 1024, False),
]

# Seeds only: staff edit these in the back office (SPEC §6 "academic acceleration").
# The manual's own values: its Hugging Face mirror (`export HF_ENDPOINT=…`),
# its GitHub accelerator (`git config --global url."https://gh-proxy.com/
# github.com/".insteadOf "https://github.com/"`) and its pip index.
PLATFORM_ENV = [
    ("HF_ENDPOINT", "http://hfmirror.mas.zetyun.cn:8082", "Hugging Face mirror"),
    ("GIT_CONFIG_COUNT", "1", "GitHub proxy: number of git config entries below"),
    ("GIT_CONFIG_KEY_0", "url.https://gh-proxy.com/github.com/.insteadOf", "GitHub proxy"),
    ("GIT_CONFIG_VALUE_0", "https://github.com/", "GitHub proxy"),
    ("PIP_INDEX_URL", "https://pypi.tuna.tsinghua.edu.cn/simple", "pip index"),
]
# Earlier seeds, replaced where staff never changed them (migration 0005).
OLD_PLATFORM_ENV = {
    "HF_ENDPOINT": "https://hf-mirror.com",
    "GIT_CONFIG_KEY_0": "url.https://ghproxy.net/https://github.com/.insteadOf",
}


def load() -> str:
    created = 0
    for sort, (name, tag, contents, recipe) in enumerate(IMAGES):
        _obj, new = Image.objects.get_or_create(
            name=name,
            tag=tag,
            defaults={"description": contents, "sort": sort, **recipe_fields(name, tag, recipe)},
        )
        created += new
    for sort, (name, cpu, mem, recommended) in enumerate(PRESETS):
        _obj, new = ResourcePreset.objects.get_or_create(
            name=name,
            defaults={
                "cpu_millicores": cpu,
                "memory_mib": mem,
                "recommended": recommended,
                "sort": sort,
            },
        )
        created += new
    for sort, (key, value, description) in enumerate(PLATFORM_ENV):
        _obj, new = PlatformEnvVar.objects.get_or_create(
            key=key, defaults={"value": value, "description": description, "sort": sort}
        )
        created += new
    return f"{created} row(s) created"
