"""How many examples a property test runs: its full count in the whole suite, a fifth
of it in the fast set (``pytest -m "not slow"``), which loads the Hypothesis profile
``mailet-mta-fast`` (see tests/conftest.py)."""

from __future__ import annotations

from hypothesis import settings

FULL_PROFILE_EXAMPLES = 100        # Hypothesis's default, kept by the full profile


def examples(full: int) -> int:
    """``full`` scaled like the loaded profile's default example count (at least 1)."""
    return max(1, full * settings().max_examples // FULL_PROFILE_EXAMPLES)
