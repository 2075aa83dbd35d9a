"""Following local ``$ref`` pointers (``#``, ``#/$defs/name``, ``#/properties/a/items``...).

>>> resolve_ref({"$defs": {"tag": {"type": "string"}}}, "#/$defs/tag")
{'type': 'string'}
>>> resolve_ref({"a": [1, {"b~c": 2}]}, "#/a/1/b~0c")
2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["resolve_ref"]


def resolve_ref(root: Any, ref: str, default: Any = None) -> Any:
    """The node a local JSON pointer reference names in ``root``, or ``default`` when there is none."""
    if not ref.startswith("#"):
        return default
    node = root
    for token in [t for t in ref[1:].split("/") if t]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return default
    return node
