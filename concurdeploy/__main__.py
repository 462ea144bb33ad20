"""``python -m concurdeploy`` — same as the ``concurdeploy`` command."""

from concurdeploy.cli.program import program

program.run()
