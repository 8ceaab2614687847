"""``python -m typewriter`` is the ``typewriter`` command."""

from typewriter.cli import main

main()
