"""The counts a fault test ends with, printed and kept as JSON, so that a run can be compared with the last."""

from __future__ import annotations

import json
from pathlib import Path

FAULTS_DIR = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "faults"


def report(name: str, **counts: int) -> None:
    """Print ``FAULT <name>: k=v ...`` and write the same counts to ``var/test-artifacts/faults/<name>.json``."""
    print(f"FAULT {name}: " + " ".join(f"{key}={value}" for key, value in counts.items()), flush=True)
    FAULTS_DIR.mkdir(parents=True, exist_ok=True)
    (FAULTS_DIR / f"{name}.json").write_text(json.dumps(counts, indent=2) + "\n")
