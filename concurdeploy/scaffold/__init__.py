"""The files ``concurdeploy init`` writes into a new project (package data, under ``project/``).

``project/`` mirrors the new project's layout; ``gitignore`` is written as ``.gitignore``.
Nothing here is imported: see :mod:`concurdeploy.cli.init`.
"""
