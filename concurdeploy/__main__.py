"""``python -m concurdeploy`` — same as the ``concurdeploy`` command."""

from .main import program

program.run()
