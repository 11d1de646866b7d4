"""The counts a fault test reports, so that a run shows what happened and not only that it passed.

Each report is one ``FAULT <name>: key=value ...`` line on standard output and the same counts as JSON in
``var/test-artifacts/faults/<name>.json`` (pytest shows standard output only for a failing test; the files stay).
"""

from __future__ import annotations

import json
from pathlib import Path

FAULTS_DIR = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "faults"


def report(name: str, **counts: int) -> None:
    """Print the counts of fault test ``name`` on one line and write them to ``FAULTS_DIR/<name>.json``."""
    FAULTS_DIR.mkdir(parents=True, exist_ok=True)
    print(f"FAULT {name}: " + " ".join(f"{key}={value}" for key, value in counts.items()), flush=True)
    (FAULTS_DIR / f"{name}.json").write_text(json.dumps(counts, indent=2) + "\n")
