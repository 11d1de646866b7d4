"""Create the project's virtual environment, also where Debian/Ubuntu lack the python3-venv package.

Debian and Ubuntu ship the ``venv`` module without ``ensurepip``; there ``python3 -m venv`` fails. We then
create the environment without pip and install pip from its wheel on PyPI, which pip supports running from.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import venv
from pathlib import Path

PYPI_JSON = "https://pypi.org/pypi/pip/json"


def main(target: Path) -> None:
    python = target / "bin" / "python"
    if python.exists() and subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0:
        return
    try:
        import ensurepip  # noqa: F401

        venv.EnvBuilder(with_pip=True, clear=True).create(target)
        return
    except ImportError:
        pass
    print("ensurepip is missing (python3-venv not installed); bootstrapping pip from PyPI", file=sys.stderr)
    venv.EnvBuilder(with_pip=False, clear=True).create(target)
    with urllib.request.urlopen(PYPI_JSON, timeout=60) as response:
        release = json.load(response)
    wheel = next(f for f in release["urls"] if f["packagetype"] == "bdist_wheel")
    with tempfile.TemporaryDirectory() as folder:
        wheel_path = Path(folder) / wheel["filename"]
        # Mirrors may answer with URLs relative to the JSON document.
        with urllib.request.urlopen(urllib.parse.urljoin(PYPI_JSON, wheel["url"]), timeout=120) as response:
            wheel_path.write_bytes(response.read())
        subprocess.run([python, f"{wheel_path}/pip", "install", "--quiet", str(wheel_path)], check=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".venv"))
