"""Which SSH algorithms a connection offers first (key exchange, ciphers, host key types).

Only the order changes: every algorithm paramiko supports stays on offer.
"""

from __future__ import annotations

import paramiko

from concurdeploy.ssh import hostkeys
from concurdeploy.ssh.specs import ConnectSpec

__all__ = ["prefer_algorithms"]

#: Key exchange preferred first: curve25519 is ≈6x cheaper for the controller than
#: OpenSSH 9's default sntrup761x25519 (see bench/), and is what OpenSSH offers everywhere.
KEX_FIRST = ("curve25519-sha256@libssh.org", "curve25519-sha256")
#: Host key algorithms that verify an "ssh-rsa" known_hosts entry, best first.
RSA_HOST_KEY_ALGS = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
#: Ciphers preferred first: AES-GCM is hardware-accelerated and needs no separate MAC.
CIPHERS_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")


def _first(preferred, offered) -> tuple:
    return tuple(a for a in preferred if a in offered) + tuple(a for a in offered if a not in preferred)


def prefer_algorithms(t: paramiko.Transport, spec: ConnectSpec) -> None:
    """Reorder ``t``'s offers (before ``start_client``): the host key types known_hosts
    already holds for ``spec``'s host first (so the key the server shows is one we can
    verify), then :data:`KEX_FIRST` and :data:`CIPHERS_FIRST`."""
    opts = t.get_security_options()
    known = hostkeys.known_key_types(spec.known_hosts, *spec.known_hosts_name)
    # known_hosts names every RSA key "ssh-rsa", but it is negotiated as rsa-sha2-512/256
    # (OpenSSH ≥ 8.8 and paramiko ≥ 4 no longer offer SHA-1 "ssh-rsa" at all).
    known = list(dict.fromkeys(a for k in known for a in (RSA_HOST_KEY_ALGS if k == "ssh-rsa" else (k,))))
    if known:
        opts.key_types = _first(known, opts.key_types)
    opts.kex = _first(KEX_FIRST, opts.kex)
    opts.ciphers = _first(CIPHERS_FIRST, opts.ciphers)
