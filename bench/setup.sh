#!/usr/bin/env bash
# Install the benchmark's peers into bench/.venv (gitignored), never into the package's env.
#   bash bench/setup.sh            # fabric, parallel-ssh, ansible-core, py-spy, pyinstrument
# Re-running is cheap (pip skips what is there). A peer that fails to install is reported
# by bench/run.py as "n/a (not installed)"; the other rows still run.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python3}"
if [ ! -x "$here/.venv/bin/python" ]; then
    "$py" -m venv "$here/.venv" || { echo "setup.sh: cannot create $here/.venv" >&2; exit 1; }
fi
pip="$here/.venv/bin/python -m pip"
$pip install -q --upgrade pip >/dev/null 2>&1 || true
status=0
for pkg in "fabric>=3,<4" "parallel-ssh>=2.12" "ansible-core" "py-spy" "pyinstrument"; do
    if ! $pip install -q "$pkg"; then
        echo "setup.sh: could not install $pkg (bench/run.py will report it as n/a)" >&2
        status=1
    fi
done
# The hosts log in as an unprivileged user with a stock home (Debian's skel .bashrc returns at
# once for non-interactive shells), as a deploy user would, instead of root, whose rc files may
# run heavy things (here: pyenv init, ~100 ms) on every remote command.
if [ "$(id -u)" = 0 ] && ! id cdbench >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash cdbench && usermod -p '*' cdbench \
        || echo "setup.sh: could not create user cdbench (bench/run.py then logs in as $(id -un))" >&2
fi
# OpenSSH client/server and iproute2 are system packages (Debian): apt-get install -y openssh-server openssh-client iproute2
for tool in ssh sshd ssh-keygen xargs; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || echo "setup.sh: $tool not found (apt-get install -y openssh-server openssh-client)" >&2
done
"$here/.venv/bin/python" -m pip list 2>/dev/null | grep -iE '^(fabric|parallel-ssh|ssh2-python|ansible-core|paramiko|py-spy|pyinstrument) '
exit $status
