"""A service's ``files``/``reload`` declaration → one :class:`FileSpec` per file, per host.

Inventories are real YAML files loaded with :func:`concurdeploy.inventory.load`, so error
locations (file, line, key) are the ones an operator would see.
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from concurdeploy.exceptions import ServiceError, UsageError
from concurdeploy.inventory import load
from concurdeploy.operations.service import TemplateFailed, push_job


@pytest.fixture
def project(tmp_path) -> Path:
    p = tmp_path / "project"
    (p / "files").mkdir(parents=True)
    (p / "files" / "haproxy.cfg").write_text("global\n  maxconn 10\n")
    return p


def inventory(project: Path, text: str):
    """Write ``text`` (dedented) as ``project/inv.yaml`` and load it."""
    path = project / "inv.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return load(path)


def host(project: Path, text: str, name: str = "lb1"):
    return next(h for h in inventory(project, text).hosts_of("all") if h.name == name)


def service_error(project: Path, text: str, name: str = "lb1") -> ServiceError:
    h = host(project, text, name)
    with pytest.raises(ServiceError) as info:
        push_job(h, str(project))
    return info.value


def line_of(project: Path, needle: str) -> int:
    """1-based line of the first line of inv.yaml containing ``needle``."""
    lines = (project / "inv.yaml").read_text().splitlines()
    return next(i + 1 for i, ln in enumerate(lines) if needle in ln)


# ---------------------------------------------------------------------------- the happy path

def test_src_relative_to_project_dest_templated_mode_parsed(project):
    h = host(project, """
        haproxy:
          hosts:
            lb1: {root: /srv/lb1}
          vars:
            files:
              - src: files/haproxy.cfg
                dest: "{{ root }}/etc/haproxy/haproxy.cfg"
                mode: "0644"
                validate: haproxy -c -f {tmp}
            reload: systemctl reload haproxy
    """)
    job = push_job(h, str(project))
    (f,) = job.files
    content = (project / "files" / "haproxy.cfg").read_bytes()
    assert f.src == str(project / "files" / "haproxy.cfg")
    assert f.dest == "/srv/lb1/etc/haproxy/haproxy.cfg"
    assert f.mode == 0o644
    assert f.sha256 == hashlib.sha256(content).hexdigest() and f.size == len(content)
    assert f.validate == "haproxy -c -f {tmp}"  # {tmp} is left for the push to fill in
    assert f.content is None                    # plain files are streamed, not held in memory
    assert job.reload == "systemctl reload haproxy"


@pytest.mark.parametrize("text, bits", [('"0644"', 0o644), ('"644"', 0o644), ('"0600"', 0o600),
                                        ('"2755"', 0o2755)])
def test_quoted_octal_modes(project, text, bits):
    h = host(project, f"""
        all:
          hosts: {{lb1: }}
          vars:
            files: [{{src: files/haproxy.cfg, dest: /etc/x.cfg, mode: {text}}}]
    """)
    assert push_job(h, str(project)).files[0].mode == bits


def test_absolute_src_is_used_as_is(project, tmp_path):
    elsewhere = tmp_path / "elsewhere.cfg"
    elsewhere.write_text("x\n")
    h = host(project, f"""
        all:
          hosts: {{lb1: }}
          vars:
            files: [{{src: {elsewhere}, dest: /etc/x.cfg}}]
    """)
    assert push_job(h, str(project)).files[0].src == str(elsewhere)


# ---------------------------------------------------------------------------- declaration errors

@pytest.mark.parametrize("mode", ["0644", "644", "true", '"rw-r--r--"', '"0999"'])
def test_unquoted_or_bad_mode_rejected_with_file_and_line(project, mode):
    err = service_error(project, f"""
        all:
          hosts: {{lb1: }}
          vars:
            files:
              - src: files/haproxy.cfg
                dest: /etc/x.cfg
                mode: {mode}
    """)
    assert isinstance(err, UsageError)  # → exit code 2
    assert err.path == str(project / "inv.yaml")
    assert err.line == line_of(project, "mode:")
    assert err.key == "mode"
    assert f"inv.yaml:{err.line}: key 'mode':" in str(err) and 'mode: "0644"' in str(err)


def test_unknown_key_rejected_with_file_and_line(project):
    err = service_error(project, """
        all:
          hosts: {lb1: }
          vars:
            files:
              - src: files/haproxy.cfg
                dest: /etc/x.cfg
                ownr: root
    """)
    assert (err.line, err.key) == (line_of(project, "ownr:"), "ownr")
    assert "unknown key 'ownr'" in str(err) and "allowed:" in str(err)


def test_validate_without_tmp_rejected(project):
    err = service_error(project, """
        all:
          hosts: {lb1: }
          vars:
            files:
              - src: files/haproxy.cfg
                dest: /etc/x.cfg
                validate: haproxy -c -f /etc/x.cfg
    """)
    assert (err.line, err.key) == (line_of(project, "validate:"), "validate")
    assert "{tmp}" in str(err)


def test_missing_src_rejected_naming_where_it_looked(project):
    err = service_error(project, """
        all:
          hosts: {lb1: }
          vars:
            files:
              - src: files/nope.cfg
                dest: /etc/x.cfg
    """)
    assert (err.line, err.key) == (line_of(project, "src:"), "src")
    assert str(project / "files" / "nope.cfg") in str(err)


def test_relative_dest_rejected(project):
    err = service_error(project, """
        all:
          hosts: {lb1: }
          vars:
            files: [{src: files/haproxy.cfg, dest: etc/x.cfg}]
    """)
    assert err.key == "dest" and "absolute" in str(err)


def test_duplicate_dest_rejected(project):
    (project / "files" / "other.cfg").write_text("other\n")
    err = service_error(project, """
        all:
          hosts: {lb1: {root: /srv}}
          vars:
            files:
              - {src: files/haproxy.cfg, dest: "{{ root }}/x.cfg"}
              - {src: files/other.cfg, dest: /srv/x.cfg}
    """)
    assert "/srv/x.cfg" in str(err) and "twice" in str(err)
    assert "inv.yaml" in str(err)  # points the operator at the declaration


def test_missing_files_var_is_a_service_error(project):
    err = service_error(project, """
        all:
          hosts: {lb1: }
    """)
    assert "files" in str(err)


# ---------------------------------------------------------------------------- templates

def test_j2_template_rendered_per_host(project):
    (project / "files" / "haproxy.cfg.j2").write_text(
        "global\n  maxconn {{ maxconn }}\n# {{ inventory_hostname }}\n")
    inv = inventory(project, """
        haproxy:
          hosts:
            lb1: {maxconn: 100}
            lb2: {maxconn: 200}
          vars:
            files: [{src: files/haproxy.cfg.j2, dest: /etc/haproxy/haproxy.cfg}]
    """)
    jobs = {h.name: push_job(h, str(project)) for h in inv.hosts_of("haproxy")}
    f1, f2 = jobs["lb1"].files[0], jobs["lb2"].files[0]
    assert f1.content == b"global\n  maxconn 100\n# lb1\n"
    assert f2.content == b"global\n  maxconn 200\n# lb2\n"
    assert f1.sha256 == hashlib.sha256(f1.content).hexdigest() and f1.size == len(f1.content)
    assert f1.sha256 != f2.sha256


def test_template_flag_forces_or_disables_rendering(project):
    (project / "files" / "raw.j2").write_text("{{ not_rendered }}\n")
    (project / "files" / "plain.cfg").write_text("v={{ v }}\n")
    h = host(project, """
        all:
          hosts: {lb1: {v: 7}}
          vars:
            files:
              - {src: files/raw.j2, dest: /etc/raw, template: false}
              - {src: files/plain.cfg, dest: /etc/plain, template: true}
    """)
    raw, plain = push_job(h, str(project)).files
    assert raw.content is None and raw.size == len("{{ not_rendered }}\n")
    assert plain.content == b"v=7\n"


def test_undefined_variable_in_template_names_template_and_variable(project):
    (project / "files" / "haproxy.cfg.j2").write_text("global\n  maxconn {{ maxconn }}\n")
    h = host(project, """
        all:
          hosts: {lb1: }
          vars:
            files: [{src: files/haproxy.cfg.j2, dest: /etc/haproxy/haproxy.cfg}]
    """)
    with pytest.raises(TemplateFailed) as info:
        push_job(h, str(project))
    msg = str(info.value)
    assert "files/haproxy.cfg.j2" in msg and "maxconn" in msg


def test_undefined_variable_in_dest_is_a_template_failure(project):
    h = host(project, """
        all:
          hosts: {lb1: }
          vars:
            files: [{src: files/haproxy.cfg, dest: "{{ nowhere }}/x.cfg"}]
    """)
    with pytest.raises(TemplateFailed, match="nowhere"):
        push_job(h, str(project))


def test_template_syntax_error_names_template_and_line(project):
    (project / "files" / "bad.j2").write_text("ok\nok\n{% if %}\n")
    h = host(project, """
        all:
          hosts: {lb1: }
          vars:
            files: [{src: files/bad.j2, dest: /etc/bad}]
    """)
    with pytest.raises(TemplateFailed, match=r"files/bad\.j2 line 3"):
        push_job(h, str(project))


# ---------------------------------------------------------------------------- the service's declaration

def test_declaration_errors_point_at_the_line_the_service_key_was_read_from(project):
    from concurdeploy.targeting import Service

    inv = inventory(project, """
        haproxy:
          hosts: {lb1: }
          vars:
            files: [{src: files/haproxy.cfg, dest: /etc/h.cfg}]
            reload: [not, a, string]
            backups: -1
        web:
          hosts: {lb1: {backups: 2}}
          vars: {files: [{src: files/haproxy.cfg, dest: /etc/w.cfg}], reload: 7}
    """)
    h = inv.hosts["lb1"]
    with pytest.raises(ServiceError) as info:
        push_job(h, str(project), service="haproxy", declaration=Service(inv, "haproxy").for_host(h))
    assert (info.value.line, info.value.key) == (line_of(project, "reload: [not"), "reload")
    with pytest.raises(ServiceError) as info:   # web's own reload, not haproxy's
        push_job(h, str(project), service="web", declaration=Service(inv, "web").for_host(h))
    assert (info.value.line, info.value.key) == (line_of(project, "reload: 7"), "reload")


def test_push_job_without_a_declaration_uses_the_hosts_scoped_override(project):
    h = host(project, """
        haproxy:
          hosts:
            lb1:
              services: {haproxy: {reload: reload-lb1, backups: 1}}
          vars:
            files: [{src: files/haproxy.cfg, dest: /etc/h.cfg}]
            reload: reload-group
    """)
    job = push_job(h, str(project), service="haproxy")
    assert (job.reload, job.backups, job.service) == ("reload-lb1", 1, "haproxy")
