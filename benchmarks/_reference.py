"""The reference Jupyter Kernel Gateway, installed in a scratch virtualenv.

kgd is a drop-in for jupyter-kernel-gateway 3.0.1, so every benchmark runs the
same workload against that exact release. It lives in its own venv (default
``/work/refvenv``, override with ``KGD_REFERENCE_VENV``) because its dependency
tree (tornado, jupyter_server) has no business in kgd's environment. A fresh
machine does not have the venv: :func:`ensure_reference_venv` creates it on
first use with the pinned versions, which needs access to PyPI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REFERENCE_VERSION = "3.0.1"
REFERENCE_REQUIREMENTS = (f"jupyter-kernel-gateway=={REFERENCE_VERSION}", "ipykernel")
DEFAULT_VENV = Path("/work/refvenv")


def reference_venv() -> Path:
    """Where the reference gateway's virtualenv lives."""
    return Path(os.environ.get("KGD_REFERENCE_VENV", str(DEFAULT_VENV)))


def _installed_version(venv: Path) -> str | None:
    """The kernel_gateway version installed in ``venv``, or None."""
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import kernel_gateway, ipykernel; print(kernel_gateway.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_reference_venv() -> Path:
    """Return the reference ``jupyter`` executable, creating the venv if needed.

    Raises SystemExit with the manual command when the install fails, so that a
    benchmark run stops with an actionable message rather than a traceback.
    """
    venv = reference_venv()
    if _installed_version(venv) != REFERENCE_VERSION:
        _create(venv)
    return venv / "bin" / "jupyter"


def _create(venv: Path) -> None:
    """Create ``venv`` and install the pinned reference gateway into it."""
    print(f"[reference] installing jupyter-kernel-gateway {REFERENCE_VERSION} into {venv} ...",
          file=sys.stderr, flush=True)
    manual = (f"python3 -m venv {venv} && {venv}/bin/pip install "
              + " ".join(REFERENCE_REQUIREMENTS))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *REFERENCE_REQUIREMENTS],
                       check=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        raise SystemExit(f"could not create the reference venv ({exc}); run by hand:\n  {manual}")
    if _installed_version(venv) != REFERENCE_VERSION:
        raise SystemExit(f"the reference venv at {venv} is unusable; recreate it with:\n  {manual}")
