"""Secrets that arrive indirectly or span lines never show (issue #15 point 1): a
``secret_vars`` var written ``"{{ vault_db }}"`` and a multi-line PEM-like secret, printed by
``run`` at ``-vv``, are masked on the terminal and in the JSON and JUnit reports, each line
of the multi-line secret included."""

from __future__ import annotations

import secrets


def _lines(value: str) -> list[str]:
    return [ln for ln in value.splitlines() if len(ln) >= 4]


def test_indirect_and_multiline_secrets_are_masked_everywhere(fleet, tmp_path):
    vault = f"Vault-{secrets.token_hex(8)}"
    body = [secrets.token_urlsafe(24) for _ in range(3)]
    pem = "-----BEGIN KEY-----\n" + "\n".join(body) + "\n-----END KEY-----"
    f = fleet(1)
    f.group_vars = {"vault_db": vault, "db_password": "{{ vault_db }}", "tls_key": pem,
                    "secret_vars": ["db_password", "tls_key"]}
    f.write_inventory()
    js, junit = tmp_path / "r.json", tmp_path / "r.xml"
    # prints the indirect secret, then one line of the PEM body on its own, then the whole key
    cmd = f"echo {vault}; echo {body[1]}; printf '%s\\n' '{pem}'"
    res = f.run("run", "haproxy", cmd, "-vv", "--report-json", str(js), "--junit", str(junit))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "********" in res.stdout  # it was printed, masked
    outputs = {"stdout": res.stdout, "stderr": res.stderr, "json": js.read_text(), "junit": junit.read_text()}
    hits = [(where, s) for where, text in outputs.items() for s in [vault, *_lines(pem)] if s in text
            and not s.startswith("-----")]
    assert hits == []
