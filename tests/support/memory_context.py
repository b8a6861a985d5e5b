"""The in-memory mailet context of the tests: the public test kit's, under its old name.

New tests import :mod:`mailet_mta.testing` directly."""

from mailet_mta.testing import FakeMailContext as MemoryContext
from mailet_mta.testing import run

__all__ = ["MemoryContext", "run"]
