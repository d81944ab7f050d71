"""Client fixtures: the L1 session fixtures (a real anvil) and a gateway on the core in-process."""

from __future__ import annotations

from l1.conftest import anvil, w3, world  # noqa: F401 - fixtures, shared
