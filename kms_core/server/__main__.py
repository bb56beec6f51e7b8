"""``python -m kms_core.server [serve options]``: the same as ``kms serve``."""
import sys

from .cli import serve_main

sys.exit(serve_main(sys.argv[1:]))
