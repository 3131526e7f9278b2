"""`python -m lethe` = the `lethe` command."""

from lethe.cli import main

main()
