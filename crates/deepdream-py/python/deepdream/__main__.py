"""The `deepdream` command, as the wheel installs it: the same command line as the Rust
binary's (``deepdream dream photo.jpg -o dream.png``), also as ``python -m deepdream``."""

import sys

from . import _deepdream


def main() -> None:
    """Runs the command line in ``sys.argv`` and exits with its status."""
    try:
        status = _deepdream.run_cli(["deepdream", *sys.argv[1:]])
    except KeyboardInterrupt:
        status = 130
    sys.exit(status)


if __name__ == "__main__":
    main()
