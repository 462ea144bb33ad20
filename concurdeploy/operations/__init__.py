"""The host operations: what runs on one host over one
:class:`~concurdeploy.ssh.connection.Connection`, each taking ``(conn, job)`` and returning a
:class:`~concurdeploy.records.HostResult` (or raising a ``HostError``).

Modules (imports flow down this list; nothing here imports api, cli, executors or report)::

    push      the push action: lock, compare, upload, then replace and reload, rollback
    commands  the ad-hoc actions: run a command (RunJob), fetch a file (GetJob)
    replace   THE ATOMIC REPLACE: temp names, prepare (verify, mode, validate, backups),
              rename over the target, rollback from backups, pruning
    handler   the reload (handler) and healthcheck; the owed-reload marker
    facts     the destinations' state, read in one command (and the lock around it)
    masking   secret values masked in results and errors
    become    who runs the remote steps: the Privilege strategy (AsLoginUser, Sudo)
    shell     quoting and the marker lines of the remote scripts
    service   a service's declaration (group vars) → one PushJob per host (controller side)
    jobs      the picklable job records (FileSpec, PushJob)

No import here: ``concurdeploy.operations.jobs`` loads without paramiko.
"""
