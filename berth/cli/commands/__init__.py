"""One module per command: FLAGS, USAGE, SUMMARY, MIN_ARGS/MAX_ARGS and ``run(cli, opts, args)``."""
