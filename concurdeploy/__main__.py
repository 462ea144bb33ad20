"""``python -m concurdeploy`` — same as the ``concurdeploy`` command."""

from concurdeploy.cli.entry import main

main()
