"""``python -m tracelens``."""

from tracelens._entry import main

main()
