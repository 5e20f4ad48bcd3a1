"""Subcommands of the ``varylm`` CLI, one module per group (see :mod:`varylm_hf.cli`)."""
