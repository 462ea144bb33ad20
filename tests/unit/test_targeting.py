"""Issue #12, points 1–3: a service is what its group declares; names that select nothing are
refused; the sandbox never mixes with real hosts.

Inventories are real YAML files loaded with :func:`concurdeploy.inventory.load`, so every
refusal is checked for the file, line and key an operator would see. Every test here fails
on the code before issue #12 (there, ``push_job`` took ``files``/``reload`` from the host's
merged vars, where the group that sorts last wins, and nothing looked at the sandbox).
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

import concurdeploy.api as api
from concurdeploy.exceptions import InventoryError, NoHostsMatched, ServiceError, UsageError
from concurdeploy.inventory import load
from concurdeploy.operations.service import push_job
from concurdeploy.targeting import Service, check_sandbox, has_local_address

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path) -> Path:
    p = tmp_path / "project"
    (p / "files").mkdir(parents=True)
    for name in ("haproxy.cfg", "web.cfg", "shared.cfg"):
        (p / "files" / name).write_text(f"# {name}\n")
    return p


def write(project: Path, text: str, name: str = "inv.yaml") -> Path:
    path = project / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def line_of(path: Path, needle: str, after: str | None = None) -> int:
    """1-based line of the first line containing ``needle`` (after the line containing ``after``)."""
    lines = path.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if after in ln) if after else 0
    return next(i + 1 for i, ln in enumerate(lines) if i >= start and needle in ln)


def job(inv, service: str, host: str, project: Path):
    h = inv.hosts[host]
    return push_job(h, str(project), service=service, declaration=Service(inv, service).for_host(h))


# Two services on the same hosts; "web" sorts after "haproxy", so in the merged vars web's
# files and reload win for both hosts (the bug of issue #12).
TWO_SERVICES = """
all:
  children:
    haproxy:
      hosts:
        lb1:
        lb2:
      vars:
        files: [{src: files/haproxy.cfg, dest: /etc/haproxy/haproxy.cfg}]
        reload: systemctl reload haproxy
        backups: 5
    web:
      hosts:
        lb1:
        lb2:
      vars:
        files: [{src: files/web.cfg, dest: /etc/nginx/nginx.conf}]
        reload: systemctl reload nginx
        healthcheck: curl -fsS localhost
"""


# ---------------------------------------------------------------------------- 1. what S declares

def test_host_in_two_services_gets_each_services_own_files_and_reload(project):
    inv = load(write(project, TWO_SERVICES))
    for host in ("lb1", "lb2"):
        hj = job(inv, "haproxy", host, project)
        assert [f.dest for f in hj.files] == ["/etc/haproxy/haproxy.cfg"]
        assert hj.files[0].src == str(project / "files" / "haproxy.cfg")
        assert hj.reload == "systemctl reload haproxy"
        assert hj.healthcheck is None          # web's healthcheck is web's
        assert hj.backups == 5 and hj.service == "haproxy"
        wj = job(inv, "web", host, project)
        assert [f.dest for f in wj.files] == ["/etc/nginx/nginx.conf"]
        assert wj.reload == "systemctl reload nginx" and wj.healthcheck == "curl -fsS localhost"
        assert wj.backups == 3                 # haproxy's backups are haproxy's


def test_declaration_says_where_each_key_was_read(project):
    path = write(project, TWO_SERVICES)
    decl = Service(load(path), "haproxy").for_host(load(path).hosts["lb1"])
    assert decl.origins["files"] == f"group haproxy ({path}:{line_of(path, 'files: [{src: files/haproxy')})"
    assert decl.locations["reload"] == (str(path), line_of(path, "reload: systemctl reload haproxy"))


def test_parent_group_gives_shared_defaults_and_the_group_wins_over_it(project):
    inv = load(write(project, """
        all:
          vars: {lock_timeout: 7}
          children:
            lbs:
              vars: {backups: 9, reload: reload-all}
              children:
                haproxy:
                  hosts: {lb1: }
                  vars:
                    files: [{src: files/haproxy.cfg, dest: /etc/h.cfg}]
                    reload: reload-haproxy
                nginx:
                  hosts: {lb1: }
                  vars:
                    files: [{src: files/web.cfg, dest: /etc/n.cfg}]
    """))
    h = job(inv, "haproxy", "lb1", project)
    assert (h.backups, h.lock_timeout, h.reload) == (9, 7.0, "reload-haproxy")
    n = job(inv, "nginx", "lb1", project)
    assert (n.backups, n.reload, [f.dest for f in n.files]) == (9, "reload-all", ["/etc/n.cfg"])


def test_subgroup_without_service_keys_inherits_its_parents_declaration(project):
    inv = load(write(project, """
        haproxy:
          vars:
            files: [{src: files/haproxy.cfg, dest: /etc/h.cfg}]
          children:
            haproxy_eu:
              hosts: {lb1: }
    """))
    assert [f.dest for f in job(inv, "haproxy_eu", "lb1", project).files] == ["/etc/h.cfg"]
    assert [f.dest for f in job(inv, "haproxy", "lb1", project).files] == ["/etc/h.cfg"]


def test_host_level_plain_keys_apply_when_the_host_is_in_one_service(project):
    inv = load(write(project, """
        haproxy:
          hosts:
            lb1: {reload: reload-lb1, backups: 0}
            lb2:
          vars:
            files: [{src: files/haproxy.cfg, dest: /etc/h.cfg}]
            reload: reload-group
    """))
    assert (job(inv, "haproxy", "lb1", project).reload, job(inv, "haproxy", "lb1", project).backups) \
        == ("reload-lb1", 0)
    assert job(inv, "haproxy", "lb2", project).reload == "reload-group"


def test_scoped_host_override_applies_to_its_service_only(project):
    inv = load(write(project, """
        haproxy:
          hosts:
            lb1:
              services:
                haproxy:
                  files: [{src: files/shared.cfg, dest: /etc/lb1-only.cfg}]
                  reload: reload-lb1-haproxy
          vars:
            files: [{src: files/haproxy.cfg, dest: /etc/h.cfg}]
            reload: reload-haproxy
        web:
          hosts: {lb1: }
          vars:
            files: [{src: files/web.cfg, dest: /etc/w.cfg}]
            reload: reload-web
    """))
    h = job(inv, "haproxy", "lb1", project)
    assert ([f.dest for f in h.files], h.reload) == (["/etc/lb1-only.cfg"], "reload-lb1-haproxy")
    w = job(inv, "web", "lb1", project)
    assert ([f.dest for f in w.files], w.reload) == (["/etc/w.cfg"], "reload-web")


def test_a_services_var_that_is_no_mapping_is_an_ordinary_var(project):
    (project / "files" / "motd.j2").write_text("{{ services | join(',') }}\n")
    inv = load(write(project, """
        haproxy:
          hosts: {lb1: {services: [ntp, sshd]}}
          vars:
            files: [{src: files/motd.j2, dest: /etc/motd}]
    """))
    assert job(inv, "haproxy", "lb1", project).files[0].content == b"ntp,sshd\n"


def test_other_services_templated_reload_neither_shows_nor_fails(project):
    (project / "files" / "h.j2").write_text("reload={{ reload }}\n")
    inv = load(write(project, """
        haproxy:
          hosts: {lb1: }
          vars:
            files: [{src: files/h.j2, dest: /etc/h.cfg}]
            reload: systemctl reload haproxy
        web:
          hosts: {lb1: }
          vars:
            files: [{src: files/web.cfg, dest: /etc/w.cfg}]
            reload: "{{ web_only_undefined_var }} reload"
    """))
    assert job(inv, "haproxy", "lb1", project).files[0].content == b"reload=systemctl reload haproxy\n"


def test_non_service_vars_still_come_from_the_merged_vars(project):
    inv = load(write(project, """
        all:
          vars: {become: true, secret_vars: [token], token: s3cret, root: /srv}
          children:
            haproxy:
              hosts: {lb1: }
              vars:
                files: [{src: files/haproxy.cfg, dest: "{{ root }}/h.cfg"}]
            web:
              hosts: {lb1: }
              vars: {root: /web, files: [{src: files/web.cfg, dest: /w.cfg}]}
    """))
    h = job(inv, "haproxy", "lb1", project)
    assert h.become is not None and h.secrets == ("s3cret",)
    # template vars: the merged vars, except that a var another SERVICE's group (web) sets
    # takes the pushed service's chain value (all: /srv), not web's
    assert h.files[0].dest == "/srv/h.cfg"


def test_an_ordinary_groups_vars_still_beat_all_in_templates(project):
    inv = load(write(project, """
        all:
          vars: {region: default}
          children:
            eu:
              hosts: {lb1: }
              vars: {region: eu}
            haproxy:
              hosts: {lb1: }
              vars:
                files: [{src: files/haproxy.cfg, dest: "/{{ region }}/h.cfg"}]
    """))
    assert job(inv, "haproxy", "lb1", project).files[0].dest == "/eu/h.cfg"


# ---------------------------------------------------------------------------- 1. refusals

def refusal(project: Path, text: str, service: str, host: str = "lb1") -> tuple[ServiceError, Path]:
    path = write(project, text)
    inv = load(path)
    with pytest.raises(ServiceError) as info:
        Service(inv, service).for_host(inv.hosts[host])
    assert isinstance(info.value, UsageError)  # → exit code 2
    return info.value, path


def test_plain_host_files_on_a_host_in_two_services_is_refused_naming_both_groups(project):
    err, path = refusal(project, """
        haproxy:
          hosts:
            lb1:
              files: [{src: files/shared.cfg, dest: /etc/x.cfg}]
          vars:
            files: [{src: files/haproxy.cfg, dest: /etc/h.cfg}]
        web:
          hosts: {lb1: }
          vars:
            files: [{src: files/web.cfg, dest: /etc/w.cfg}]
    """, "haproxy")
    assert (err.path, err.line, err.key) == (str(path), line_of(path, "files: [{src: files/shared"), "files")
    msg = str(err)
    assert "haproxy" in msg and "web" in msg and f"{path}:{line_of(path, 'files: [{src: files/web')}" in msg
    assert "services: {haproxy: {files: ...}}" in msg


def test_two_unrelated_parents_declaring_files_is_refused(project):
    err, path = refusal(project, """
        blue:
          vars:
            files: [{src: files/web.cfg, dest: /etc/b.cfg}]
          children:
            app: {hosts: {lb1: }}
        green:
          vars:
            files: [{src: files/shared.cfg, dest: /etc/g.cfg}]
          children:
            app:
    """, "app")
    assert err.key == "files" and err.path == str(path)
    assert err.line == line_of(path, "files:", after="blue:")
    msg = str(err)
    assert "blue" in msg and "green" in msg and f":{line_of(path, 'files:', after='green:')}" in msg
    assert "set files in group app's own vars" in msg


def test_two_parents_are_fine_when_one_is_the_others_parent(project):
    inv = load(write(project, """
        outer:
          vars: {files: [{src: files/web.cfg, dest: /etc/outer.cfg}]}
          children:
            inner:
              vars: {files: [{src: files/shared.cfg, dest: /etc/inner.cfg}]}
              children:
                app: {hosts: {lb1: }}
    """))
    assert [f.dest for f in job(inv, "app", "lb1", project).files] == ["/etc/inner.cfg"]


def test_files_and_reload_from_two_unrelated_parents_is_refused(project):
    err, path = refusal(project, """
        blue:
          vars: {files: [{src: files/web.cfg, dest: /etc/b.cfg}]}
          children:
            app: {hosts: {lb1: }}
        green:
          vars: {reload: reload-green}
          children:
            app:
    """, "app")
    assert "blue" in str(err) and "green" in str(err) and err.path == str(path)


def test_subgroup_of_the_service_setting_a_key_is_refused(project):
    err, path = refusal(project, """
        haproxy:
          vars: {files: [{src: files/haproxy.cfg, dest: /etc/h.cfg}]}
          children:
            haproxy_eu:
              hosts: {lb1: }
              vars: {reload: reload-eu}
    """, "haproxy")
    assert (err.line, err.key) == (line_of(path, "reload: reload-eu"), "reload")
    assert "haproxy_eu" in str(err) and "subgroup of haproxy" in str(err)


def test_defaults_group_that_is_no_parent_of_the_service_is_refused(project):
    err, path = refusal(project, """
        haproxy:
          hosts: {lb1: }
          vars: {files: [{src: files/haproxy.cfg, dest: /etc/h.cfg}]}
        smalldisk:
          hosts: {lb1: }
          vars: {backups: 0}
    """, "haproxy")
    assert (err.line, err.key) == (line_of(path, "backups: 0"), "backups")
    assert "smalldisk" in str(err) and "would ignore it" in str(err)


def test_group_without_files_is_refused_at_its_line(project):
    err, path = refusal(project, """
        all:
          children:
            haproxy:
              hosts: {lb1: }
              vars: {reload: systemctl reload haproxy}
    """, "haproxy")
    assert (err.path, err.line) == (str(path), line_of(path, "haproxy:"))
    assert "declares no files" in str(err)


@pytest.mark.parametrize("override, needle", [
    ("{haproxy: {owner: root}}", "unknown key 'owner' in services.haproxy"),
    ("{haproxy: [x]}", "services.haproxy must be a mapping"),
    ("{haprxy: {reload: x}}", "services.haprxy names a group the host is not in"),
])
def test_bad_scoped_override_is_refused_at_its_line(project, override, needle):
    err, path = refusal(project, f"""
        haproxy:
          hosts:
            lb1:
              services: {override}
          vars: {{files: [{{src: files/haproxy.cfg, dest: /etc/h.cfg}}]}}
    """, "haproxy")
    assert needle in str(err) and err.line == line_of(path, "services:")


def test_group_level_scoped_override_is_refused(project):
    path = write(project, """
        lbs:
          vars:
            services: {haproxy: {reload: x}}
          children:
            haproxy:
              hosts: {lb1: }
              vars: {files: [{src: files/haproxy.cfg, dest: /etc/h.cfg}]}
    """)
    with pytest.raises(ServiceError, match="host's own vars only") as info:
        Service(load(path), "haproxy")
    assert info.value.line == line_of(path, "services:")


@pytest.mark.parametrize("name, needle", [
    ("lb1", "'lb1' is a host"),
    ("haproxy:&web", "not the host pattern"),
    ("web*", "not the host pattern"),
])
def test_push_takes_a_group_name_only(project, name, needle):
    inv = load(write(project, TWO_SERVICES))
    with pytest.raises(ServiceError, match="push") as info:
        Service(inv, name)
    assert needle in str(info.value) and "--limit" in str(info.value)


def test_unknown_service_name_is_an_unknown_group_with_suggestions(project):
    with pytest.raises(InventoryError, match="did you mean 'haproxy'"):
        Service(load(write(project, TWO_SERVICES)), "haprox")


def test_api_push_refuses_before_any_host_is_contacted(project):
    write(project, """
        haproxy:
          hosts:
            lb1: {files: [{src: files/shared.cfg, dest: /x.cfg}]}
          vars: {files: [{src: files/haproxy.cfg, dest: /etc/h.cfg}]}
        web:
          hosts: {lb1: }
          vars: {files: [{src: files/web.cfg, dest: /etc/w.cfg}]}
    """)
    # Refused while building the jobs: no connection is attempted (lb1 resolves nowhere anyway).
    with pytest.raises(ServiceError, match="two services"):
        api.push("haproxy", inventory=str(project / "inv.yaml"), project_dir=str(project))


# ---------------------------------------------------------------------------- 3. nothing selected

@pytest.mark.parametrize("group, limit, needle", [
    ("nope", None, "matches no host or group"),                 # unknown group
    ("haproxy:&db", None, "matches no host"),                   # empty intersection
    ("haproxy", "nope", "--limit 'nope' selects nothing"),      # --limit naming nothing
    ("haproxy", "db1", "leaves no host of 'haproxy'"),          # --limit leaving nothing
    ("haproxy", "lb*:!lb*", "selects nothing"),                 # --limit matching nothing
])
def test_selection_of_nothing_is_an_inventory_error(project, group, limit, needle):
    inv = load(write(project, TWO_SERVICES + "    db:\n      hosts: {db1: }\n"))
    with pytest.raises(NoHostsMatched) as info:
        api.select_hosts(inv, group, limit)
    assert needle in str(info.value) and isinstance(info.value, UsageError)


# ---------------------------------------------------------------------------- 4. the sandbox

def sandbox_project(project: Path) -> Path:
    folder = project / "inventories"
    folder.mkdir()
    shutil.copy(REPO / "inventories" / "sandbox.yaml", folder / "sandbox.yaml")
    return folder


def test_the_shipped_sandbox_inventory_alone_is_accepted():
    inv = load(REPO / "inventories" / "sandbox.yaml")
    check_sandbox(inv)
    assert [h.name for h in api.select_hosts(inv, "haproxy")] == ["lb1", "lb2", "lb3", "lb4"]


def test_sandbox_file_beside_a_real_inventory_is_refused_naming_the_file(project):
    folder = sandbox_project(project)
    write(folder, """
        web:
          hosts:
            web1: {host: web1.example}
          vars:
            files: [{src: files/web.cfg, dest: /etc/w.cfg}]
    """, "production.yaml")
    inv = load(folder)
    with pytest.raises(InventoryError) as info:
        api.select_hosts(inv, "web")
    err, sandbox = info.value, folder / "sandbox.yaml"
    assert (err.path, err.line, err.key) == (str(sandbox), line_of(sandbox, "connection: sandbox", after="vars:"), "connection")
    assert "web1" in str(err) and "production.yaml" in str(err)
    assert f"remove {sandbox}" in str(err) and f"-i {folder / 'production.yaml'}" in str(err)


def test_sandbox_connection_reaching_a_loopback_host_of_another_file_is_refused(project):
    folder = sandbox_project(project)
    write(folder, "web:\n  hosts:\n    web1: {host: 127.0.0.1, port: 2222}\n", "hosts.yaml")
    with pytest.raises(InventoryError, match="defined in another file"):
        check_sandbox(load(folder))


@pytest.mark.parametrize("host", ["web1: {host: 10.0.0.5}", "db.example.com:", "web1: {ansible_host: lb.example}",
                                  "10.1.2.3:"])
def test_sandbox_host_with_a_real_address_is_refused(project, host):
    path = write(project, f"all:\n  vars: {{connection: sandbox}}\n  hosts:\n    lb1:\n    {host}\n")
    with pytest.raises(InventoryError, match="never applies to a real host") as info:
        check_sandbox(load(path))
    assert (info.value.path, info.value.line) == (str(path), 2)


def test_one_file_mixing_sandbox_and_ssh_hosts_is_refused(project):
    path = write(project, """
        sandboxed:
          vars: {connection: sandbox}
          hosts: {lb1: }
        real:
          hosts: {web1: {host: web1.example}}
    """)
    with pytest.raises(InventoryError, match="mixes sandbox hosts") as info:
        api.select_hosts(load(path), "sandboxed")
    assert "lb1" in str(info.value) and "web1" in str(info.value)


@pytest.mark.parametrize("vars, local", [
    ({}, True), ({"host": "127.0.0.1"}, True), ({"host": "127.5.6.7"}, True), ({"host": "::1"}, True),
    ({"host": "localhost"}, True), ({"host": "10.0.0.1"}, False), ({"host": "lb2"}, False),
    ({"host": "lb1.example"}, False),
])
def test_local_address_rule(project, vars, local):
    inv = load(write(project, f"all:\n  hosts:\n    lb1: {vars or ''}\n"))
    assert has_local_address(inv.hosts["lb1"]) is local


def test_connect_specs_refuse_a_sandbox_host_with_a_real_address(project):
    import contextlib

    path = write(project, "all:\n  hosts:\n    web1: {host: 10.9.9.9, connection: sandbox}\n")
    host = load(path).hosts["web1"]
    with contextlib.ExitStack() as stack, pytest.raises(UsageError, match="never applies to a real host"):
        api._connect_specs([host], api._options(None, {"project_dir": str(project)}), stack)
    assert not (project / ".sandbox").exists()


def test_the_shipped_example_inventory_declares_two_services_on_the_same_hosts():
    inv = load(REPO / "examples" / "inventories" / "production.yaml")
    check_sandbox(inv)
    got = {}
    for service in ("haproxy", "keepalived"):
        declared = Service(inv, service)
        for h in inv.select(service):
            j = push_job(h, str(REPO), service=service, declaration=declared.for_host(h))
            got[service, h.name] = ([f.dest for f in j.files], j.reload, j.backups)
    assert got == {
        ("haproxy", "lb1.example"): (["/etc/haproxy/haproxy.cfg"], "systemctl reload haproxy", 5),
        ("haproxy", "lb2.example"): (["/etc/haproxy/haproxy.cfg"], "systemctl reload haproxy", 5),
        ("keepalived", "lb1.example"): (["/etc/keepalived/keepalived.conf"], "systemctl reload keepalived", 5),
        ("keepalived", "lb2.example"): (["/etc/keepalived/keepalived.conf"], "systemctl restart keepalived", 5),
    }
