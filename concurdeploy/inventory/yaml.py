"""Read one YAML inventory file into :class:`~concurdeploy.inventory.model.YamlMapping`\\ s
that keep the file and line of every mapping and key.

PyYAML's ``SafeLoader`` with two changes: every mapping is a ``YamlMapping`` (so
:func:`~concurdeploy.inventory.model.where` can name ``file:line`` for any value), and a key
written twice in one mapping is an error instead of "the last one wins". ``<<: *anchor``
merge keys still work and are not counted as duplicates.

(This module is ``concurdeploy.inventory.yaml``; ``import yaml`` here and elsewhere is
PyYAML, since imports are absolute.)
"""

from __future__ import annotations

import yaml

from concurdeploy.exceptions import InventoryError
from concurdeploy.inventory.model import YamlMapping

__all__ = ["read_yaml"]

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings are :class:`YamlMapping` and that rejects duplicate keys."""

    def __init__(self, stream, path: str):
        super().__init__(stream)
        self.path = path

    def construct_located_mapping(self, node):
        """Build a :class:`YamlMapping` for ``node`` (two steps, so recursive aliases work).

        :raises InventoryError: a key appears twice in the mapping.
        """
        data = YamlMapping.at(self.path, node.start_mark.line + 1)
        yield data
        explicit = {id(key) for key, _ in node.value if key.tag != _MERGE_TAG}
        self.flatten_mapping(node)  # resolves "<<: *anchor"; merged keys come first
        first_line = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=False)
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "found unhashable key", key_node.start_mark) from None
            if id(key_node) in explicit:
                if key in first_line:
                    raise InventoryError(
                        f"duplicate key {key!r} in one mapping (first at line {first_line[key]}); "
                        "YAML would silently keep only the last one: remove or rename one",
                        self.path, line, str(key))
                first_line[key] = line
            data.put(key, self.construct_object(value_node, deep=False), (self.path, line))


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_located_mapping)


def read_yaml(path: str):
    """Parse one YAML file.

    :param path: the file to read (UTF-8).
    :returns: the document (``YamlMapping``, list, scalar, or None if empty).
    :raises InventoryError: unreadable file, malformed YAML (with its line), duplicate key.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as err:
        raise InventoryError(f"cannot read inventory file: {err}", path) from None
    loader = _Loader(text, path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err)
        context = getattr(err, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise InventoryError(f"malformed YAML: {detail}; fix the syntax on this line "
                             "(indent with spaces, quote values holding ': ' or '#')",
                             path, line) from None
    finally:
        loader.dispose()
