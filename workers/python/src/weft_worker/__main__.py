"""``python -m weft_worker``."""

from .cli import main

main()
