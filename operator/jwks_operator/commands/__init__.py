"""One module per ``jwks-operator`` subcommand; each exposes ``register(subparsers)``."""
