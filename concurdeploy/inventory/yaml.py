"""Read one YAML inventory file into :class:`~concurdeploy.inventory.model.YamlMapping`\\ s
that keep the file and line of every mapping and key.

PyYAML's ``SafeLoader`` with two changes: every mapping is a ``YamlMapping`` (so
:func:`~concurdeploy.inventory.model.where` can name ``file:line`` for any value), and a key
written twice in one mapping is an error instead of "the last one wins". ``<<: *anchor``
merge keys still work and are not counted as duplicates.

Ansible's tags: ``!unsafe 'text'`` is read as an :class:`~concurdeploy.inventory.model.Unsafe`
string (taken literally, never rendered as a template); ``!vault`` (an ansible-vault encrypted
value) is refused at its line with the ``*_env`` var to use instead: concurdeploy holds no
vault password and never writes secrets in the inventory. Any other ``!tag`` is refused too.

(This module is ``concurdeploy.inventory.yaml``; ``import yaml`` here and elsewhere is
PyYAML, since imports are absolute.)
"""

from __future__ import annotations

import yaml

from concurdeploy.exceptions import InventoryError
from concurdeploy.inputs import AliasBomb, check_alias_expansion, read_bounded_text
from concurdeploy.inventory.model import Unsafe, YamlMapping
from concurdeploy.inventory.vars import PLAINTEXT_PASSWORD_VARS

__all__ = ["read_text", "read_yaml", "vault_error"]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_VAULT_TAGS = ("!vault", "!vault-encrypted")



def read_text(path: str) -> str:
    """The UTF-8 text of inventory file ``path``. :raises InventoryError: unreadable, or not UTF-8."""
    try:
        return read_bounded_text(path)
    except (OSError, UnicodeDecodeError) as err:
        raise InventoryError(f"cannot read inventory file: {err}", path) from None

def vault_error(path: str | None, line: int | None, key=None) -> InventoryError:
    """The refusal of an ansible-vault encrypted value (``!vault`` in YAML, ``__ansible_vault``
    in JSON) at ``path:line``, naming the ``*_env`` var to use for ``key``."""
    fix = PLAINTEXT_PASSWORD_VARS.get(key)
    use = (f"set {fix}: NAME (an environment variable holding the value)" if fix else
           "put the value in an environment variable and name it with the matching *_env var "
           "(password_env, become_password_env, key_env, passphrase_env), or write it in plain "
           "text if it is not a secret")
    return InventoryError(f"value encrypted with ansible-vault: not supported (concurdeploy holds no "
                          f"vault password); use the *_env form: {use}", path, line,
                          None if key is None else str(key))


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
            if value_node.tag in _VAULT_TAGS:
                raise vault_error(self.path, value_node.start_mark.line + 1, key)
            if id(key_node) in explicit:
                if key in first_line:
                    raise InventoryError(
                        f"duplicate key {key!r} in one mapping (first at line {first_line[key]}); "
                        "YAML would silently keep only the last one: remove or rename one",
                        self.path, line, str(key))
                first_line[key] = line
            data.put(key, self.construct_object(value_node, deep=False), (self.path, line))


    def construct_unsafe(self, node):
        """``!unsafe 'text'`` -> :class:`Unsafe` (a literal string, never templated).

        :raises InventoryError: ``!unsafe`` on a list or mapping.
        """
        if not isinstance(node, yaml.ScalarNode):
            raise InventoryError("!unsafe marks a string (e.g. !unsafe '{{ literal }}'), not a list "
                                 "or mapping: put it on each string", self.path, node.start_mark.line + 1)
        return Unsafe(self.construct_scalar(node))

    def construct_vault(self, node):
        raise vault_error(self.path, node.start_mark.line + 1)

    def construct_unknown(self, tag_suffix, node):
        raise InventoryError(f"unknown YAML tag {node.tag!r}: concurdeploy reads plain YAML plus "
                             "Ansible's !unsafe (and refuses !vault); remove the tag",
                             self.path, node.start_mark.line + 1)


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_located_mapping)
_Loader.add_constructor("!unsafe", _Loader.construct_unsafe)
for _tag in _VAULT_TAGS:
    _Loader.add_constructor(_tag, _Loader.construct_vault)
_Loader.add_multi_constructor("!", _Loader.construct_unknown)


def read_yaml(path: str):
    """Parse one YAML file.

    :param path: the file to read (UTF-8).
    :returns: the document (``YamlMapping``, list, scalar, or None if empty).
    :raises InventoryError: unreadable file, malformed YAML (with its line), duplicate key,
        aliases expanding to too many values (:func:`~concurdeploy.inputs.check_alias_expansion`).
    """
    text = read_text(path)
    loader = _Loader(text, path)
    try:
        node = loader.get_single_node()
        check_alias_expansion(node)
        return None if node is None else loader.construct_document(node)
    except AliasBomb as err:
        raise InventoryError(str(err), path, err.line) from None
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
