"""Generated corpus cases about values and layouts: vars of every YAML type and INI's literal
values; connection vars and their ``ansible_ssh_*`` forms; folders with ``group_vars/`` and
``host_vars/`` (files or folders of files; ``.yml``, ``.yaml``, ``.json``, no extension);
executable inventory scripts; and the cases concurdeploy refuses on purpose.

YAML here is written as text on purpose: ``010``, ``yes``, ``1e3`` or ``2024-01-01`` are
what a YAML 1.1 reader makes of them, which is the point of the comparison.
"""

from __future__ import annotations

import itertools
import json

from tests.differential.corpus_case import Case, Refusal, line_of

__all__ = ["value_cases"]


def _yaml_case(name: str, host_vars: str, about: str, group_vars: str = "") -> Case:
    """``hosts.yml`` with group ``g`` holding ``t.example`` whose vars are ``host_vars`` (YAML
    lines, indented here) and, optionally, group vars."""
    def indent(text: str, pad: str) -> str:
        return "".join(pad + line + "\n" for line in text.strip("\n").splitlines())

    text = "all:\n  children:\n    g:\n      hosts:\n        t.example:\n" + indent(host_vars, " " * 10)
    if group_vars:
        text += "      vars:\n" + indent(group_vars, " " * 8)
    return Case(name, {"hosts.yml": text}, entry="hosts.yml", about=about)


TYPES_YAML = {
    "ints": "a: 1\nb: -3\nc: 010\nd: 0x1F\ne: 0o17\nf: 1_000\ng: +5\nh: 0",
    "floats": "a: 1.5\nb: 1e3\nc: 1.0e+3\nd: .inf\ne: -.inf\nf: 6.8523015e+5\ng: 1_0.5",
    "bools": "a: yes\nb: no\nc: on\nd: off\ne: true\nf: False\ng: TRUE\nh: y\ni: n",
    "nulls": "a: ~\nb: null\nc:\nd: Null",
    "strings": "a: \"010\"\nb: 'yes'\nc: \"1.0\"\nd: \"null\"\ne: \"\"\nf: \"  spaced  \"\n"
               "g: \"with: colon\"\nh: 'it''s'\ni: \"tab\\tx\"\nj: \"{{ a }}\"\nk: plain words here",
    "block_strings": "a: |\n  line one\n  line two\nb: >\n  folded\n  text\nc: |-\n  no newline",
    "lists": "a: [1, \"a\", null, true]\nb:\n  - {k: 1}\n  - [2, 3]\nc: []\nd:\n  - x",
    "dicts": "a: {k: {n: [1, {m: null}]}}\nb: {}\nc: {1: one, 2: two}",
    "dates": "a: 2024-01-01\nb: 2024-01-01 10:00:00\nc: 2001-12-14t21:59:43.10-05:00",
    "anchors": "a: &base {x: 1, y: 2}\nb: *base\nc:\n  <<: *base\n  y: 3",
    "unsafe": "a: !unsafe '{{ not_templated }}'\nb: !unsafe plain",
    "templates": "a: \"{{ b }}\"\nb: \"{{ inventory_hostname }}\"\nc: \"{% if true %}x{% endif %}\"",
}


def _types() -> list[Case]:
    cases = [_yaml_case(f"types_yaml_{k}", v, f"YAML {k} as host vars") for k, v in TYPES_YAML.items()]
    bools = "".join(f"bool_{line}\n" for line in TYPES_YAML["bools"].splitlines())
    cases.append(_yaml_case("types_yaml_group_level", "own: 1", "YAML types as group vars",
                            group_vars=TYPES_YAML["ints"] + "\n" + bools))
    across = ("all:\n  vars:\n    cfg: {a: 1, b: 1}\n    lst: [1, 2]\n  children:\n    parent:\n"
              "      vars:\n        cfg: {b: 2, c: 2}\n        lst: [3]\n      children:\n        kid:\n"
              "          vars:\n            cfg: {c: 3}\n          hosts:\n            t.example:\n")
    cases.append(Case("types_dict_across_groups", {"hosts.yml": across}, entry="hosts.yml",
                      about="dict and list vars in all < parent < child: replaced, not merged"))
    json_inv = {"all": {"vars": {"n": 1, "f": 1.5, "b": True, "z": None, "s": "010"},
                        "children": {"web": {"hosts": {"j.example": {"lst": [1, "2"], "d": {"k": "v"}}}}}}}
    cases.append(Case("types_json_file", {"hosts.json": json.dumps(json_inv, indent=2)}, entry="hosts.json",
                      about="a YAML-format inventory written in JSON"))
    ini_values = ["a=1", "b=True", "c=yes", 'd="[1, 2]"', "e=\"{'k': 1}\"", "f=1.5", "g=010", "h=None",
                  'i="x y"', "j='q'", "k=-2", "l=1e3"]
    cases.append(Case("types_ini_inline", {"hosts.ini": "[g]\nt.example " + " ".join(ini_values) + "\n"},
                      entry="hosts.ini", about="INI host-line values (Python literals)"))
    cases.append(Case("types_ini_group_vars", {"hosts.ini": "[g]\nt.example\n\n[g:vars]\n" + "\n".join(ini_values) + "\n"},
                      entry="hosts.ini", about="INI [g:vars] values"))
    cases.append(Case("types_ini_all_vars_comments",
                      {"hosts.ini": "; a comment\n# another\nt.example a=1 # trailing\n\n[all:vars]\nx = spaced "
                                    "value\ny=\"quoted # not a comment\"\nz=\n"},
                      entry="hosts.ini", about="INI comments, [all:vars], spaces around =, empty value"))
    return cases


CONN = {
    "ansible_basic": "ansible_host: 127.0.0.2\nansible_port: 2222\nansible_user: deploy",
    "ssh_legacy": "ansible_ssh_host: 127.0.0.3\nansible_ssh_port: 2200\nansible_ssh_user: legacy",
    "both_forms_same": "ansible_host: 127.0.0.4\nansible_ssh_host: 127.0.0.4",
    "port_string": "ansible_port: \"2222\"",
    "become": "ansible_become: yes\nansible_become_user: root\nansible_become_method: sudo",
    "connection_ssh": "ansible_connection: ssh\nansible_ssh_host: 127.0.0.12",
    "key_file": "ansible_ssh_private_key_file: ~/.ssh/id_ed25519\nansible_ssh_user: ops",
    "templated_host": "idx: 7\nansible_host: \"127.0.0.{{ idx }}\"",
    "own_names": "host: 127.0.0.5\nport: 2201\nuser: deploy",
    "python_interpreter": "ansible_python_interpreter: /usr/bin/python3\nansible_host: 127.0.0.6",
    "connection_winrm": "ansible_connection: winrm",
}


def _connection() -> list[Case]:
    cases = [_yaml_case(f"conn_{k}", v, f"connection vars: {k}") for k, v in CONN.items()]
    cases.append(_yaml_case("conn_group_level", "ansible_port: 2203", "connection vars at group level",
                            group_vars="ansible_user: ops\nansible_port: 2202\nansible_host: 127.0.0.9"))
    cases.append(Case("conn_host_port_yaml", {"hosts.yml": "all:\n  hosts:\n    \"h.example:2222\":\n"
                                                           "    \"127.0.0.3:2201\": {ansible_user: x}\n"},
                      entry="hosts.yml", about="host:port in a YAML host name"))
    cases.append(Case("conn_host_port_ini",
                      {"hosts.ini": "h.example:2222\n127.0.0.3:2201 ansible_user=x\n\n[web]\n"
                                    "w.example ansible_host=127.0.0.8 ansible_port=\"2204\" ansible_ssh_user=s\n"},
                      entry="hosts.ini", about="host:port and connection vars in INI"))
    return cases


_INV = "all:\n  children:\n    web:\n      hosts:\n        w1.example:\n        w2.example: {x: inv_host}\n" \
       "      vars: {x: inv_group, y: inv_group}\n    db:\n      hosts:\n        d1.example:\n"


def _vars_file(ext: str, pairs: dict) -> str:
    if ext == ".json":
        return json.dumps(pairs) + "\n"
    return "".join(f"{k}: {v}\n" for k, v in pairs.items())


def _folders() -> list[Case]:
    cases = []
    for target, shape, ext in itertools.product(("group_vars", "host_vars"), ("file", "dir"),
                                                (".yml", ".yaml", ".json", "")):
        entity = "web" if target == "group_vars" else "w2.example"
        files = {"hosts.yml": _INV}
        if shape == "file":
            files[f"{target}/{entity}{ext}"] = _vars_file(ext, {"x": f"{target}_file", "z": ext or "none"})
        else:
            files[f"{target}/{entity}/10-base{ext}"] = _vars_file(ext, {"x": "base", "z": "base"})
            files[f"{target}/{entity}/20-over{ext}"] = _vars_file(ext, {"z": "over"})
        label = {"": "noext"}.get(ext, ext.lstrip("."))
        cases.append(Case(f"gv_{target}_{shape}_{label}", files,
                          about=f"{target}/{entity} as a {shape} with extension {ext or 'none'}"))
    more = {
        "gv_all": ({"group_vars/all.yml": "x: gv_all\nonly_all: 1\n"}, ".", "group_vars/all.yml"),
        "gv_unknown_group": ({"group_vars/nosuch.yml": "x: 1\n"}, ".", "group_vars for an undefined group"),
        "gv_entry_file": ({"group_vars/web.yml": "x: gv\n", "host_vars/d1.example.yml": "h: 1\n"}, "hosts.yml",
                          "-i names the file; group_vars/host_vars beside it apply"),
        "gv_ignored_files": ({"group_vars/web.txt": "x: txt\n", "group_vars/web/.hidden.yml": "x: hidden\n",
                              "group_vars/web/real.yml": "r: 1\n", "README.md": "# notes\n"},
                             ".", "files Ansible skips: .txt, dot-files, README.md"),
        "gv_all_and_group": ({"group_vars/all.yml": "x: all\ny: all\n", "group_vars/db.yml": "y: db\n"},
                             ".", "group_vars/all.yml below group_vars/db.yml"),
        "folder_subfolder": ({"more/extra.yml": "all:\n  children:\n    db:\n      hosts:\n        d2.example:\n"},
                             ".", "an inventory file in a subfolder"),
        "folder_mixed_formats": ({"b.ini": "[web]\nw3.example x=ini\n\n[cache]\nc.example\n",
                                  "c": "[db]\nd1.example x=noext\n"}, ".", "YAML, INI and an extension-less INI"),
    }
    for name, (extra, entry, about) in more.items():
        cases.append(Case(name, {"hosts.yml": _INV, **extra}, entry=entry, about=about))
    cases.append(Case("gv_ini_inventory", {"hosts.ini": "[web]\nw1.example\n\n[web:vars]\nx=ini\n",
                                           "group_vars/web.yaml": "x: gv\nlst: [1, 2]\n",
                                           "host_vars/w1.example": "h: noext\n"},
                      about="INI inventory with group_vars/host_vars"))
    return cases


def _script(body: str) -> str:
    return "#!/bin/sh\n# inventory script: --list prints the inventory as JSON\n" + body


def _scripts() -> list[Case]:
    listing = {"web": {"hosts": ["s1.example", "s2.example"], "vars": {"tier": "web"}},
               "db": ["s3.example"],
               "all": {"children": ["web", "db", "empty"]},
               "_meta": {"hostvars": {"s1.example": {"ansible_host": "127.0.0.11", "n": 1},
                                      "s3.example": {"lst": [1, 2]}}}}
    meta = _script("case \"$1\" in\n  --list) cat <<'JSON'\n" + json.dumps(listing, indent=1)
                   + "\nJSON\n  ;;\n  *) echo '{}' ;;\nesac\n")
    no_meta = _script("case \"$1\" in\n  --list) echo '{\"web\": [\"n1.example\", \"n2.example\"]}' ;;\n"
                      "  --host) if [ \"$2\" = n1.example ]; then echo '{\"x\": 1}'; else echo '{}'; fi ;;\nesac\n")
    return [
        Case("script_meta", {"inv.sh": meta}, entry="inv.sh", executable=frozenset({"inv.sh"}),
             about="executable inventory script with _meta"),
        Case("script_host_protocol", {"inv.sh": no_meta}, entry="inv.sh", executable=frozenset({"inv.sh"}),
             about="script without _meta: --host per host"),
        Case("script_in_folder", {"inv.sh": meta, "static.yml": "all:\n  children:\n    web:\n      hosts:\n"
                                                               "        s9.example:\n",
                                  "group_vars/web.yml": "from_gv: 1\n"},
             executable=frozenset({"inv.sh"}), about="a script beside a static file and group_vars"),
    ]


_VAULT = ("api_token: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6231373061373965346565386232343261363435383135313930\n"
          "  3166306238326539613232346230363537363738303937390a\n")


def _refusals() -> list[Case]:
    cases = []
    same = "all:\n  children:\n    db:\n      hosts:\n        d1.example:\n    web:\n      hosts:\n        db:\n"
    cases.append(Case("refuse_host_group_same_name_yaml", {"hosts.yml": same}, entry="hosts.yml",
                      refuse=Refusal("hosts.yml", (line_of(same, "db:"), line_of(same, "        db:")),
                                     "a host and a group both named db"), about="host and group named db"))
    same_ini = "[db]\nd1.example\n\n[web]\ndb\n"
    cases.append(Case("refuse_host_group_same_name_ini", {"hosts.ini": same_ini}, entry="hosts.ini",
                      refuse=Refusal("hosts.ini", (1, 5), "a host and a group both named db"),
                      about="host and group named db (INI)"))
    inline = "all:\n  hosts:\n    v.example:\n" + "".join("      " + ln + "\n" for ln in _VAULT.splitlines())
    cases.append(Case("refuse_vault_inline", {"hosts.yml": inline}, entry="hosts.yml",
                      refuse=Refusal("hosts.yml", (line_of(inline, "!vault"),), "!vault value"),
                      about="!vault value in the inventory"))
    cases.append(Case("refuse_vault_group_vars", {"hosts.yml": _INV, "group_vars/web.yml": _VAULT},
                      refuse=Refusal("group_vars/web.yml", (1,), "!vault value"), about="!vault in group_vars"))
    pw = "all:\n  hosts:\n    p.example:\n      ansible_password: hunter2-example\n"
    cases.append(Case("refuse_plaintext_password", {"hosts.yml": pw}, entry="hosts.yml",
                      refuse=Refusal("hosts.yml", (4,), "password in plain text"),
                      about="ansible_password in plain text"))
    su = "all:\n  hosts:\n    s.example:\n      ansible_become: true\n      ansible_become_method: su\n"
    cases.append(Case("refuse_become_method_su", {"hosts.yml": su}, entry="hosts.yml",
                      refuse=Refusal("hosts.yml", (5,), "become with sudo only"),
                      about="ansible_become_method: su (concurdeploy becomes with sudo only)"))
    args = "all:\n  hosts:\n    a.example:\n      ansible_ssh_common_args: '-o ProxyJump=bastion.example'\n"
    cases.append(Case("refuse_ssh_common_args", {"hosts.yml": args}, entry="hosts.yml",
                      refuse=Refusal("hosts.yml", (4,), "ssh options cannot be passed to paramiko"),
                      about="ansible_ssh_common_args (concurdeploy runs no ssh command)"))
    dup = "all:\n  hosts:\n    d.example:\n      x: 1\n      x: 2\n"
    cases.append(Case("refuse_duplicate_key", {"hosts.yml": dup}, entry="hosts.yml",
                      refuse=Refusal("hosts.yml", (4, 5), "duplicate key: Ansible warns and keeps the last"),
                      about="a key twice in one YAML mapping"))
    bool_int = "all:\n  hosts:\n    d.example:\n      c: {1: one, true: yes}\n"
    cases.append(Case("refuse_duplicate_key_1_true", {"hosts.yml": bool_int}, entry="hosts.yml",
                      refuse=Refusal("hosts.yml", (4,), "keys 1 and true are one Python key"),
                      about="YAML keys 1 and true in one mapping (equal in Python)"))
    both = {"hosts.yml": _INV, "group_vars/web.yml": "x: file\na: 1\n", "group_vars/web/extra.yml": "x: dir\nb: 2\n"}
    cases.append(Case("refuse_group_vars_file_and_dir", both,
                      refuse=Refusal("group_vars/web.yml", (), "Ansible reads group_vars/web/ and ignores web.yml"),
                      about="group_vars/web.yml and group_vars/web/ both"))
    sub = {"hosts.yml": _INV, "more/extra.yml": "all:\n  hosts:\n    e.example:\n", "more/group_vars/web.yml": "x: sub\n"}
    cases.append(Case("refuse_group_vars_in_subfolder", sub,
                      refuse=Refusal("more/group_vars", (), "Ansible ignores group_vars/ below the inventory folder"),
                      about="group_vars inside a subfolder of the inventory"))
    return cases


def value_cases() -> list[Case]:
    """Every value/layout case, in a fixed order."""
    return _types() + _connection() + _folders() + _scripts() + _refusals()
