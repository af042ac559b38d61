"""``python -m asyncq``: the same as the ``asyncq`` command."""

from asyncq.cli import main

if __name__ == "__main__":
    main()
