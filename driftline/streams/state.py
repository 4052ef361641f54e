"""The key-value state the stream processors keep.

Processors only use the mapping protocol (``get``, ``[]=``, ``del``, ``in``, ``items``,
``len``), so the embedded runtime backs them with a plain ``dict`` and the Faust runtime with
changelog-backed Tables. Values are tuples of primitives or objects with ``to_bytes`` /
``from_bytes``, so every value has a compact serialised form.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

State = MutableMapping[Any, Any]
