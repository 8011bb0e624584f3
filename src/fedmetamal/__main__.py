"""``python -m fedmetamal`` runs the command-line interface."""

from fedmetamal.cli import main

main()
