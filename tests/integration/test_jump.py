"""Jump hosts (``jump`` var, ``ProxyJump``) against real OpenSSH servers on 127.0.0.1.

Every server is an ``sshd`` on 127.0.0.1: a *bastion* and one or more *targets*. The
target is reached through the bastion with a ``direct-tcpip`` channel to
``127.0.0.1:TARGET_PORT``. Since both listen on the same address, the tests prove the
tunnel is really used, three ways:

1. while connected, no socket of the test process is connected to the target's port,
   while a process of the bastion's sshd holds one (read from ``/proc``);
2. the bastion's sshd log (``LogLevel DEBUG1`` through a ``Match`` block) records the
   ``direct-tcpip`` request to the target's port;
3. a bastion with ``DisableForwarding yes`` makes the host unreachable, naming the bastion.

Sharing: the bastion's log has one ``Accepted publickey`` line per connection made to it,
so N hosts through one worker process must give exactly one.
"""

from __future__ import annotations

import os
import re
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from concurdeploy.exceptions import (
    AuthFailed,
    HostKeyMismatch,
    HostKeyUnknown,
    HostUnreachable,
)
from concurdeploy.executors.local import Job, run_host, run_jobs
from concurdeploy.operations.commands import RunJob, run_command
from concurdeploy.records import Status
from concurdeploy.ssh import connection
from concurdeploy.ssh.connection import Connection
from concurdeploy.ssh.specs import ConnectSpec, connect_spec
from tests.sshd import _descendants, free_port, login_user

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"
#: Lets the bastion log each direct-tcpip request and each login (sshd: first value wins,
#: so the global ``LogLevel ERROR`` is overridden for connections from 127.0.0.1 only here).
VERBOSE_LOG = "Match Address 127.0.0.1\n    LogLevel DEBUG1\n"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def spec_for(port: int, known_hosts: str, key: str, jump=(), **kw) -> ConnectSpec:
    kw.setdefault("connect_timeout", 5.0)
    kw.setdefault("command_timeout", 10.0)
    return ConnectSpec(name=kw.pop("name", f"h{port}"), hostname=LOOPBACK, port=port,
                       user=login_user(), key_file=key, known_hosts=known_hosts,
                       allow_agent=False, jump=tuple(jump), **kw)


def logins(server) -> int:
    """Connections that logged in to ``server`` so far (needs ``VERBOSE_LOG``)."""
    return len(re.findall(r"Accepted publickey for ", server.stderr_text()))


def tunnelled_ports(server) -> list[int]:
    """Target ports of the direct-tcpip requests ``server`` received (needs ``VERBOSE_LOG``)."""
    return [int(p) for p in re.findall(r"server_request_direct_tcpip: originator .* target "
                                       r"127\.0\.0\.1 port (\d+)", server.stderr_text())]


def _tcp_inodes_to(port: int) -> set[str]:
    """Inodes of established TCP sockets whose remote end is 127.0.0.1:``port``."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and remote == f"0100007F:{port:04X}":
                inodes.add(inode)
    return inodes


def _socket_inodes(pid: int | str) -> set[str]:
    found = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for name in names:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if link.startswith("socket:["):
            found.add(link[8:-1])
    return found


def assert_reached_through(bastion, target_port: int) -> None:
    """The TCP connection to ``target_port`` belongs to the bastion's sshd, not to us."""
    to_target = _tcp_inodes_to(target_port)
    assert to_target, "no TCP connection to the target at all"
    assert not (to_target & _socket_inodes("self")), "the test process connected to the target directly"
    held = set().union(*(_socket_inodes(p) for p in _descendants(bastion.pid)))
    assert to_target & held, "no process of the bastion's sshd holds the connection to the target"


@pytest.fixture(autouse=True)
def _no_bastions_left():
    """Each test starts and ends with no cached bastion connection in this process."""
    connection.close_bastions()
    yield
    connection.close_bastions()


@pytest.fixture
def net(sshd_factory, known_hosts_file, client_keys):
    """A bastion (verbose log) and two targets, all known in one known_hosts file."""
    bastion = sshd_factory(1, extra_config=VERBOSE_LOG)[0]
    targets = sshd_factory(2, extra_config=VERBOSE_LOG)

    class Net:
        pass

    n = Net()
    n.bastion, n.targets, n.key = bastion, targets, client_keys.ed25519
    n.kh = known_hosts_file([bastion, *targets])
    n.hop = spec_for(bastion.port, n.kh, n.key, name="bastion")
    return n


# --------------------------------------------------------------------------
# the tunnel is real
# --------------------------------------------------------------------------

def test_connection_through_a_bastion_uses_a_direct_tcpip_channel(net):
    target = net.targets[0]
    with Connection(spec_for(target.port, net.kh, net.key, jump=[net.hop])) as conn:
        res = conn.run("echo through")
        assert (res.exited, res.stdout) == (0, "through\n")
        assert_reached_through(net.bastion, target.port)
        # and SFTP works over the same tunnelled transport
        assert conn.sftp.stat("/").st_mode
    assert tunnelled_ports(net.bastion) == [target.port]
    assert logins(net.bastion) == 1 and logins(target) == 1


def test_bastion_that_refuses_forwarding_makes_the_host_unreachable(sshd_factory, known_hosts_file,
                                                                    client_keys):
    bastion = sshd_factory(1, extra_config="DisableForwarding yes\n")[0]
    target = sshd_factory(1)[0]
    kh = known_hosts_file([bastion, target])
    hop = spec_for(bastion.port, kh, client_keys.ed25519, name="bastion")
    direct = run_host(Job(spec_for(target.port, kh, client_keys.ed25519), run_command, RunJob("true")))
    assert direct.status is Status.OK  # the target itself is fine …
    r = run_host(Job(spec_for(target.port, kh, client_keys.ed25519, jump=[hop]), run_command,
                     RunJob("true")))
    assert r.status is Status.UNREACHABLE  # … but only reachable directly, not through it
    assert "bastion bastion" in r.error and "administratively prohibited" in r.error
    assert f"127.0.0.1:{target.port}" in r.error


def test_bastion_permitopen_allows_only_its_target(sshd_factory, known_hosts_file, client_keys):
    targets = sshd_factory(2)
    bastion = sshd_factory(1, extra_config=f"PermitOpen 127.0.0.1:{targets[0].port}\n")[0]
    kh = known_hosts_file([bastion, *targets])
    hop = spec_for(bastion.port, kh, client_keys.ed25519, name="bastion")
    ok = run_host(Job(spec_for(targets[0].port, kh, client_keys.ed25519, jump=[hop]), run_command,
                      RunJob("echo ok")))
    assert ok.status is Status.OK, ok.error
    refused = run_host(Job(spec_for(targets[1].port, kh, client_keys.ed25519, jump=[hop]),
                           run_command, RunJob("true")))
    assert refused.status is Status.UNREACHABLE and "administratively prohibited" in refused.error


def test_two_hops(sshd_factory, known_hosts_file, client_keys):
    b1, b2 = sshd_factory(2, extra_config=VERBOSE_LOG)
    target = sshd_factory(1)[0]
    kh = known_hosts_file([b1, b2, target])
    hops = [spec_for(b1.port, kh, client_keys.ed25519, name="b1"),
            spec_for(b2.port, kh, client_keys.ed25519, name="b2")]
    with Connection(spec_for(target.port, kh, client_keys.ed25519, jump=hops)) as conn:
        assert conn.run("echo two").stdout == "two\n"
        assert_reached_through(b2, target.port)
        assert_reached_through(b1, b2.port)
    assert tunnelled_ports(b1) == [b2.port] and tunnelled_ports(b2) == [target.port]


# --------------------------------------------------------------------------
# errors name the bastion; its host key is verified like any other
# --------------------------------------------------------------------------

def test_unreachable_bastion_names_it(net):
    closed = free_port()
    hop = spec_for(closed, net.kh, net.key, name="gate", connect_timeout=2.0)
    t0 = time.monotonic()
    r = run_host(Job(spec_for(net.targets[0].port, net.kh, net.key, jump=[hop], connect_retries=0),
                     run_command, RunJob("true")))
    assert time.monotonic() - t0 < 8
    assert r.status is Status.UNREACHABLE
    assert r.error.startswith(f"bastion gate ({login_user()}@127.0.0.1:{closed}): connect to")
    assert logins(net.targets[0]) == 0


def test_changed_bastion_key_is_refused_and_target_never_contacted(net, client_keys, tmp_path):
    kh = tmp_path / "kh_wrong"
    other = Path(client_keys.other + ".pub").read_text().split()[:2]
    lines = [f"[127.0.0.1]:{net.bastion.port} {' '.join(other)}"]
    lines += [ln for t in net.targets for ln in t.known_hosts_lines()]
    kh.write_text("\n".join(lines) + "\n")
    hop = spec_for(net.bastion.port, str(kh), net.key, name="bastion", host_key_policy="accept-new")
    spec = spec_for(net.targets[0].port, str(kh), net.key, jump=[hop], host_key_policy="accept-new")
    with pytest.raises(HostKeyMismatch) as e:
        Connection(spec).open()
    assert str(e.value).startswith("bastion bastion (")
    assert "HOST KEY CHANGED" in str(e.value)
    assert tunnelled_ports(net.bastion) == [] and logins(net.bastion) == 0
    assert logins(net.targets[0]) == 0
    assert kh.read_text().count("\n") == 3  # nothing appended


def test_unknown_bastion_under_strict_then_accept_new_records_both(net, tmp_path):
    kh = str(tmp_path / "kh_empty")
    hop = spec_for(net.bastion.port, kh, net.key, name="bastion")
    with pytest.raises(HostKeyUnknown, match=r"^bastion bastion .*is not in known_hosts"):
        Connection(spec_for(net.targets[0].port, kh, net.key, jump=[hop])).open()
    hop = spec_for(net.bastion.port, kh, net.key, name="bastion", host_key_policy="accept-new")
    spec = spec_for(net.targets[0].port, kh, net.key, jump=[hop], host_key_policy="accept-new")
    with Connection(spec) as conn:
        assert conn.run("echo hi").stdout == "hi\n"
        assert any(w.startswith("bastion bastion: host key recorded") for w in conn.warnings)
        assert any(w.startswith("host key recorded") for w in conn.warnings)
    recorded = Path(kh).read_text().splitlines()
    assert [ln.split()[0] for ln in recorded] == [f"[127.0.0.1]:{net.bastion.port}",
                                                  f"[127.0.0.1]:{net.targets[0].port}"]
    connection.close_bastions()
    strict = spec_for(net.targets[0].port, kh, net.key, jump=[spec_for(net.bastion.port, kh, net.key)])
    with Connection(strict) as conn:  # the second run verifies both
        assert conn.run("echo again").stdout == "again\n"


def test_bastion_auth_failure_names_the_bastion(net, client_keys):
    hop = spec_for(net.bastion.port, net.kh, client_keys.other, name="bastion")
    with pytest.raises(AuthFailed, match=r"^bastion bastion \(.*authentication as"):
        Connection(spec_for(net.targets[0].port, net.kh, net.key, jump=[hop])).open()


def test_target_down_behind_the_bastion(net):
    closed = free_port()
    r = run_host(Job(spec_for(closed, net.kh, net.key, jump=[net.hop]), run_command, RunJob("true")))
    assert r.status is Status.UNREACHABLE
    assert f"bastion bastion ({login_user()}@127.0.0.1:{net.bastion.port}) could not open a tunnel " \
           f"to 127.0.0.1:{closed}: connect failed" == r.error


# --------------------------------------------------------------------------
# one bastion connection shared by the hosts behind it
# --------------------------------------------------------------------------

def test_threads_of_one_process_share_one_bastion_connection(sshd_factory, known_hosts_file, client_keys):
    bastion = sshd_factory(1, extra_config=VERBOSE_LOG)[0]
    target = sshd_factory(1, ports_per_server=6)[0]
    kh = known_hosts_file([bastion, target])
    hop = spec_for(bastion.port, kh, client_keys.ed25519, name="bastion")
    jobs = [Job(spec_for(p, kh, client_keys.ed25519, jump=[hop], name=f"t{i}"), run_command,
                RunJob("echo $SSH_CONNECTION"))
            for i, p in enumerate(target.ports)]
    results = run_jobs(jobs, forks=6, processes=1)
    assert [r.status for r in results] == [Status.OK] * 6, [r.error for r in results]
    assert logins(bastion) == 1  # one login on the bastion for six hosts
    assert sorted(tunnelled_ports(bastion)) == sorted(target.ports)
    # a new pool (a new worker process), one thread, three hosts one after the other: the
    # bastion connection is kept between them, so one more login in all
    results = run_jobs(jobs[:3], forks=1, processes=1)
    assert [r.status for r in results] == [Status.OK] * 3
    assert logins(bastion) == 2


def test_the_in_controller_executor_closes_its_bastion_connections_when_done(sshd_factory, known_hosts_file,
                                                                             client_keys):
    """A run of a few hosts uses the controller's threads, whose process outlives the run (a
    library caller): the bastion connection it cached is closed with the pool, as a worker
    process's end closed it."""
    import time

    from concurdeploy.executors.core import make_executor

    bastion = sshd_factory(1, extra_config=VERBOSE_LOG)[0]
    target = sshd_factory(1, ports_per_server=2)[0]
    kh = known_hosts_file([bastion, target])
    hop = spec_for(bastion.port, kh, client_keys.ed25519, name="bastion")
    jobs = [Job(spec_for(p, kh, client_keys.ed25519, jump=[hop], name=f"t{i}"), run_command, RunJob("true"))
            for i, p in enumerate(target.ports)]
    with make_executor("local", forks=2, hosts=[object()] * 2, processes=0) as pool:
        assert type(pool).__name__ == "InlinePool"
        results = pool.run(jobs, deadline=time.monotonic() + 60)
        assert [r.status for r in results] == [Status.OK] * 2, [r.error for r in results]
        assert _tcp_inodes_to(bastion.port) & _socket_inodes("self"), "no bastion connection was cached"
    assert not _tcp_inodes_to(bastion.port) & _socket_inodes("self"), "the bastion connection outlived the pool"
    assert logins(bastion) == 1


def test_several_processes_at_most_one_bastion_login_each(sshd_factory, known_hosts_file, client_keys):
    bastion = sshd_factory(1, extra_config=VERBOSE_LOG)[0]
    target = sshd_factory(1, ports_per_server=8)[0]
    kh = known_hosts_file([bastion, target])
    hop = spec_for(bastion.port, kh, client_keys.ed25519, name="bastion")
    jobs = [Job(spec_for(p, kh, client_keys.ed25519, jump=[hop], name=f"t{i}"), run_command,
                RunJob("true")) for i, p in enumerate(target.ports)]
    results = run_jobs(jobs, forks=8, processes=2)
    assert all(r.status is Status.OK for r in results), [r.error for r in results]
    assert 1 <= logins(bastion) <= 2


def test_a_dropped_bastion_connection_is_replaced(net):
    spec = spec_for(net.targets[0].port, net.kh, net.key, jump=[net.hop])
    with Connection(spec) as conn:
        assert conn.run("echo 1").stdout == "1\n"
        bastion_transport = conn.transport.sock.get_transport()
    bastion_transport.close()  # as if the bastion dropped it while idle
    with Connection(spec) as conn:
        assert conn.run("echo 2").stdout == "2\n"
        assert conn.transport.sock.get_transport() is not bastion_transport
    assert logins(net.bastion) == 2


def test_a_host_closing_mid_write_does_not_drop_the_shared_bastion(net, monkeypatch):
    """A packet still being written through a host's tunnel when the host closes goes out
    before the tunnel's CHANNEL_CLOSE, never after it.

    paramiko closes a transport's socket from the closing thread while the transport's own
    thread may be half-way through a write (e.g. answering the host's session close). That
    packet then followed our CLOSE; OpenSSH, having freed the channel, dropped the whole
    bastion connection ("data packet referred to nonexistent channel") and every other
    host's tunnel with it: hosts still running failed with "connection dropped while
    running" (the flaky six-hosts test under load). Here a write is held in flight, as a
    descheduled thread would be, while the host closes.
    """
    import threading

    from paramiko.common import MSG_CHANNEL_DATA

    with Connection(spec_for(net.targets[1].port, net.kh, net.key, jump=[net.hop])) as other:
        host = Connection(spec_for(net.targets[0].port, net.kh, net.key, jump=[net.hop])).open()
        tunnel = host.transport.sock
        bastion_transport, remote_id = tunnel.get_transport(), tunnel.remote_chanid
        in_flight, release = threading.Event(), threading.Event()
        send = bastion_transport._send_user_message

        def held(m):  # the write of the "late-writer" thread waits here, its channel check passed
            data = m.asbytes()
            if (threading.current_thread().name == "late-writer" and data[0] == MSG_CHANNEL_DATA
                    and int.from_bytes(data[1:5], "big") == remote_id):
                in_flight.set()
                release.wait(10)
            return send(m)

        freed, unlink = threading.Event(), bastion_transport._unlink_channel

        def unlinked(chanid):  # the server's CLOSE came: it has freed its end of the channel
            unlink(chanid)
            if chanid == tunnel.chanid:
                freed.set()

        monkeypatch.setattr(bastion_transport, "_send_user_message", held)
        monkeypatch.setattr(bastion_transport, "_unlink_channel", unlinked)
        writer = threading.Thread(target=host.transport.send_ignore, name="late-writer")
        writer.start()
        assert in_flight.wait(10), "the write never reached the tunnel"
        closer = threading.Thread(target=host.close)
        closer.start()
        closer.join(1.0)  # fixed, close waits for the write in flight (and never gets to CLOSE)
        if not closer.is_alive():  # unfixed, its CLOSE overtook the write: let the server free
            assert freed.wait(10)  # the channel before the late packet arrives
        release.set()
        writer.join(10)
        closer.join(10)
        assert not writer.is_alive() and not closer.is_alive()
        # one round trip on the bastion connection: the server has handled what came before
        bastion_transport.global_request("keepalive@openssh.com", wait=True)
        assert bastion_transport.is_active(), f"bastion connection dropped: {net.bastion.stderr_text()[-200:]}"
        assert other.run("echo still").stdout == "still\n"
    assert "nonexistent channel" not in net.bastion.stderr_text()
    assert logins(net.bastion) == 1


def test_waiting_threads_share_one_failed_attempt(stalling_server, net):
    """Six hosts behind a bastion that never answers: bounded by one timeout, not six."""
    import threading

    hop = spec_for(stalling_server.port, net.kh, net.key, name="silent", connect_timeout=3.0)
    errors = []

    def go(port):
        try:
            Connection(spec_for(port, net.kh, net.key, jump=[hop], connect_timeout=3.0)).open()
        except HostUnreachable as e:
            errors.append(str(e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=go, args=(net.targets[0].port,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert time.monotonic() - t0 < 10  # one 3 s timeout shared, not six in a row (18 s)
    assert len(errors) == 6 and all(e.startswith("bastion silent (") for e in errors)
    assert stalling_server.connections == 1


# --------------------------------------------------------------------------
# from the inventory and ssh_config, through the CLI
# --------------------------------------------------------------------------

def test_push_through_a_jump_host(fleet, sshd_factory, known_hosts_file, client_keys):
    f = fleet(2)
    bastion = sshd_factory(1, extra_config=VERBOSE_LOG)[0]
    known_hosts_file([bastion, *f.servers], f.known_hosts)
    f.group_vars = {"jump": f"{login_user()}@127.0.0.1:{bastion.port}"}
    f.write_inventory()
    proc = f.run("push", "haproxy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr  # clean worker exit
    for name in f.names:
        assert f.dest(name).read_bytes().startswith(b"global")
    assert sorted(set(tunnelled_ports(bastion))) == sorted(s.port for s in f.servers)
    assert 1 <= logins(bastion) <= 2  # one per worker process that had a host, at most


def test_jump_naming_an_inventory_host(fleet, sshd_factory, known_hosts_file):
    f = fleet(1)
    bastion = sshd_factory(1, extra_config=VERBOSE_LOG)[0]
    known_hosts_file([bastion, *f.servers], f.known_hosts)
    f.host_vars = {"h1": {"jump": "gate"}}
    path = f.write_inventory()
    inv = yaml.safe_load(path.read_text())
    inv["all"]["children"]["bastions"] = {"hosts": {"gate": {"host": "127.0.0.1", "port": bastion.port}}}
    path.write_text(yaml.safe_dump(inv, sort_keys=False))

    from concurdeploy.inventory import load
    loaded = load(path)
    spec = connect_spec("h1", loaded.hosts["h1"].vars, inventory=loaded)
    assert [(h.name, h.port) for h in spec.jump] == [("gate", bastion.port)]
    r = run_host(Job(spec, run_command, RunJob("echo via-gate")))
    assert r.status is Status.OK and tunnelled_ports(bastion) == [f.servers[0].port]


def test_proxyjump_from_ssh_config_through_the_cli(fleet, sshd_factory, known_hosts_file, fake_home):
    f = fleet(1)
    bastion = sshd_factory(1, extra_config=VERBOSE_LOG)[0]
    known_hosts_file([bastion, *f.servers], f.known_hosts)
    (fake_home / ".ssh" / "config").write_text(textwrap.dedent(f"""
        Host gate
            HostName 127.0.0.1
            Port {bastion.port}
            User {login_user()}
        Host 127.0.0.1
            ProxyJump gate
        """))
    proc = f.run("run", "haproxy", "echo $SSH_CONNECTION")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tunnelled_ports(bastion) == [f.servers[0].port]
    # jump: none in the inventory beats ProxyJump
    f.host_vars = {"h1": {"jump": "none"}}
    f.write_inventory()
    proc = f.run("run", "haproxy", "true")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tunnelled_ports(bastion) == [f.servers[0].port]  # no new tunnel
