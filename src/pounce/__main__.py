"""``python -m pounce`` is the same as the ``pounce`` command."""

from pounce.cli.main import main

if __name__ == "__main__":
    main()
