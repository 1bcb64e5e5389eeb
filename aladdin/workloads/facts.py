"""What runs, measured inside a workload at its start (issue 14, "What runs is shown").

The page and the API of a workshop or job show the Python, torch and CUDA
the workload really has and the GPUs it sees, measured in the workload
itself (not read from the catalog), so a student can trust "torch 2.6.0,
CUDA available" and support can see a mismatch at once.
"""

from __future__ import annotations

import json
import time

from django.utils.translation import gettext as _

from aladdin.cluster.base import ClusterDriver, DriverError

# Run inside the workload by its own Python. Importing torch is what the
# manual's CUDA check does, so the answer is the one the student would get.
PROBE = r"""
import json, os, platform, sys
facts = {"python": platform.python_version(), "executable": sys.executable}
try:
    import torch
except Exception:
    pass
else:
    facts["torch"] = torch.__version__
    facts["cuda"] = torch.version.cuda or ""
    facts["cuda_available"] = bool(torch.cuda.is_available())
    facts["gpus"] = [
        torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
    ] if facts["cuda_available"] else []
facts["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
print("ALADDIN-FACTS " + json.dumps(facts), flush=True)
"""
MARKER = b"ALADDIN-FACTS "
# No Python in the image (ubuntu): say so rather than fail.
NO_PYTHON = {"python": ""}
PROBE_TIMEOUT_SECONDS = 60.0
OUTPUT_LIMIT = 64 * 1024


def measure(driver: ClusterDriver, *, name: str, python: str = "python3") -> dict:
    """The facts of the running workload ``name``, measured by ``python`` in it.

    ``python`` is the workload's interpreter (a job's own conda python, or
    the image's ``python3`` on PATH): student data for the process inside,
    never a host path. Raises DriverError (not running, agent down) and
    TimeoutError.
    """
    command = [
        "/bin/sh",
        "-c",
        'command -v "$1" >/dev/null 2>&1 || { echo "ALADDIN-FACTS {\\"python\\": \\"\\"}"; exit 0; }; '
        'exec "$1" -c "$2"',
        "aladdin-probe",
        python,
        PROBE,
    ]
    session = driver.exec_in_workload(name=name, command=command)
    out = bytearray()
    deadline = time.monotonic() + PROBE_TIMEOUT_SECONDS
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the probe in {name} did not answer")
            channel, data = session.read(timeout=left)
            if channel == 0:
                break
            if channel == 1 and len(out) < OUTPUT_LIMIT:
                out += data
    finally:
        session.close()
    for line in bytes(out).splitlines():
        if line.startswith(MARKER):
            try:
                facts = json.loads(line[len(MARKER) :])
            except ValueError:
                break
            if isinstance(facts, dict):
                return facts
    raise DriverError(f"the probe in {name} printed no facts", code="probe_failed")


def describe(facts: dict) -> str:
    """One line for pages: "Python 3.11.7 · torch 2.6.0+cu124 · CUDA available · 1 GPU: …"."""
    if not facts:
        return ""
    parts = []
    if facts.get("python"):
        parts.append(f"Python {facts['python']}")
    else:
        parts.append(_("no Python"))
    if facts.get("torch"):
        parts.append(f"torch {facts['torch']}")
        parts.append(
            _("CUDA available") if facts.get("cuda_available") else _("CUDA not available")
        )
        gpus = facts.get("gpus") or []
        if gpus:
            parts.append(_("GPUs: %(names)s") % {"names": ", ".join(map(str, gpus))})
    return " · ".join(parts)
