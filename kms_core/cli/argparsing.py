"""argparse set up the AWS CLI's way, kept apart so that ``kms --version`` imports nothing else."""
from __future__ import annotations

import argparse

USAGE = (
    "kms [options] <command> [parameters]\n"
    "To see help text, you can run:\n\n"
    "  kms help\n"
    "  kms <command> help\n"
)


class UsageError(Exception):
    """argparse's complaint (missing or malformed option); exit code 2 like argparse."""


class ArgParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main()`` decides output and exit code."""

    def __init__(self, **kwargs):
        kwargs.setdefault("prog", "kms")
        kwargs.setdefault("add_help", False)
        kwargs.setdefault("conflict_handler", "resolve")
        super().__init__(**kwargs)

    def error(self, message):
        raise UsageError(message)
