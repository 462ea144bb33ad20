"""SSH: how to reach a host, and the one connection to it.

Modules, and what each owns:

- :mod:`~concurdeploy.ssh.connection`: the paramiko boundary. :class:`Connection` (connect,
  handshake, authenticate, run, hold, SFTP); the only place paramiko/socket errors become
  concurdeploy errors (``AuthFailed``, ``HostUnreachable``, ``CommandTimeout``…).
- :mod:`~concurdeploy.ssh.keys`: private keys (``load_private_key``) and the credentials
  offered, in OpenSSH's order (key_env, key_file, agent, ``~/.ssh/id_*``, password_env).
- :mod:`~concurdeploy.ssh.bastions`: jump hosts: one shared connection per bastion and
  process, ``direct-tcpip`` tunnels through it, ``close_bastions``.
- :mod:`~concurdeploy.ssh.channels`: a command left running (``HeldCommand``), output decoding.
- :mod:`~concurdeploy.ssh.algorithms`: which key exchange, cipher and host key types go first.
- :mod:`~concurdeploy.ssh.hostkeys`: known_hosts: verify, ``accept-new`` appends, fingerprints.
- :mod:`~concurdeploy.ssh.sshconfig`: the OpenSSH client config (``~/.ssh/config``): which
  file, and what it means for a host (connection vars).
- :mod:`~concurdeploy.ssh.openssh_config`: the reader, as ``ssh -G`` reads a config (Include,
  Match, first value wins, tokens); :mod:`~concurdeploy.ssh.openssh_lex`: its word
  splitting, quoting, tokens and patterns.
- :mod:`~concurdeploy.ssh.proxycommand`: ssh_config's ``ProxyCommand`` as the connection's socket.
- :mod:`~concurdeploy.ssh.specs`: the picklable ``ConnectSpec`` and ``connect_spec`` (vars,
  ssh_config, flags → spec); imports no paramiko.
- :mod:`~concurdeploy.ssh.keyscan`: scanning host keys for ``concurdeploy keyscan``.
- :mod:`~concurdeploy.ssh.passphrases`: asking key passphrases on the controller's terminal.
- :mod:`~concurdeploy.ssh.envsecrets`: ``*_env`` secrets kept out of child environments
  (sealed in the controller's memory, read by workers with ``getenv``).
- :mod:`~concurdeploy.ssh.knownhosts`: known_hosts lines parsed and matched as OpenSSH does.

This package imports only ``concurdeploy.exceptions``, ``concurdeploy.records`` and
``concurdeploy.inventory`` (for file:line messages). Importing it does not import paramiko.
"""
