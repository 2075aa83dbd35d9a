"""JSON Schema keyword groups shared by the decoding-schema modules."""

from __future__ import annotations

__all__ = ["ANNOTATIONS", "OBJECT_WORDS", "PLACES"]

OBJECT_WORDS = frozenset({"properties", "required", "additionalProperties", "patternProperties", "propertyNames",
                          "minProperties", "maxProperties", "dependentRequired"})  # fmt: skip
"""Keywords that only make sense on an object: a schema with any of them describes one."""

PLACES = frozenset({"$defs", "definitions", "$id", "$anchor", "$schema"})
"""Keywords other schemas point at or that say how to read the schema: they stay where they are."""

ANNOTATIONS = frozenset({"title", "description", "$comment", "examples", "default", "deprecated", "readOnly",
                         "writeOnly"}) | PLACES  # fmt: skip
"""Keywords that admit every value: ignored when asking what a schema constrains."""
