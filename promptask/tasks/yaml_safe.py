"""Reading YAML task files without trusting them.

PyYAML's safe loader refuses Python tags, but a short file can still cost a
lot: aliases let a few hundred bytes stand for millions of nodes (the "billion
laughs"), which anything that walks the document, our line map included,
pays for in full.  So the document is composed once, and refused before
anything walks it when it uses more than :data:`MAX_ALIASES` aliases, would
expand to more than :data:`MAX_NODES` nodes, refers to itself, or nests deeper
than :data:`MAX_DEPTH` levels.  A key given twice in one mapping is a mistake
PyYAML would silently resolve to the last value: it is refused too.

>>> data, node = load_yaml("name: t\\nlabels: [a, b]\\n", source="t.yaml")
>>> data
{'name': 't', 'labels': ['a', 'b']}
>>> load_yaml("name: t\\nname: u\\n", source="t.yaml")
Traceback (most recent call last):
...
promptask.errors.TaskDefinitionError: t.yaml:2: duplicate key 'name' (first given on line 1)
"""

from __future__ import annotations

from typing import Any

import yaml

from promptask.errors import TaskDefinitionError

__all__ = ["MAX_ALIASES", "MAX_DEPTH", "MAX_NODES", "load_yaml"]

MAX_ALIASES = 100
"""Most aliases (``*name``) one task file may use."""

MAX_NODES = 100_000
"""Most nodes one task file may stand for, with every alias expanded."""

MAX_DEPTH = 100
"""Most levels of nested mappings and lists in one task file."""


class _Loader(yaml.SafeLoader):
    def __init__(self, text: str, source: str) -> None:
        super().__init__(text)
        self.source = source
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise TaskDefinitionError(
                    f"more than {MAX_ALIASES} YAML aliases; write the values out",
                    source=self.source,
                    line=mark.line + 1,
                )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise TaskDefinitionError(
                    f"duplicate key {key!r} (first given on line {seen[key]})", source=self.source, line=line
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Refuse a document that expands to too many nodes, nests too deeply or contains itself (no recursion)."""
    sizes: dict[int, int] = {}  # expanded size of each node finished so far, by id
    # Depth-first with an explicit stack: (node, depth, children pending?)
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, True)]
    open_nodes: set[int] = set()
    total = 0
    while stack:
        node, depth, entering = stack.pop()
        if entering:
            if id(node) in open_nodes:
                raise TaskDefinitionError("a YAML alias refers to the value that contains it", source=source,
                                          line=node.start_mark.line + 1)  # fmt: skip
            if id(node) in sizes:
                total += sizes[id(node)]
            else:
                if depth > MAX_DEPTH:
                    raise TaskDefinitionError(f"nested more than {MAX_DEPTH} levels deep", source=source,
                                              line=node.start_mark.line + 1)  # fmt: skip
                open_nodes.add(id(node))
                stack.append((node, depth, False))
                sizes[id(node)] = -total  # completed below: size = total after - total before
                for child in _children(node):
                    stack.append((child, depth + 1, True))
                total += 1
        else:
            open_nodes.discard(id(node))
            sizes[id(node)] += total
        if total > MAX_NODES:
            raise TaskDefinitionError(
                f"the file stands for more than {MAX_NODES:,} values once its YAML aliases are expanded",
                source=source,
                line=node.start_mark.line + 1,
            )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_yaml(text: str, *, source: str) -> tuple[Any, yaml.Node | None]:
    """The data of a one-document YAML text, and its node tree (for line numbers).

    Raises :class:`TaskDefinitionError` for the limits above and
    ``yaml.YAMLError`` for malformed YAML.
    """
    loader = _Loader(text, source)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise TaskDefinitionError(f"nested more than {MAX_DEPTH} levels deep", source=source) from None
        if node is None:
            return None, None
        _check_expansion(node, source)
        return loader.construct_document(node), node
    finally:
        loader.dispose()
