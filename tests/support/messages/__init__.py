"""The test message corpus: ``corpus()`` → {file name: message bytes}."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def corpus() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(HERE.glob("*.eml"))}
