"""Standalone mode: the keyset lifecycle and the JWKS server on one machine, no cluster.

``config`` reads JwksKeySet documents from a file, ``statedir`` guards and locks the
private state directory, ``runner`` schedules each keyset on the shared ``reconcile``,
``publishdir`` writes static files for nginx, ``keysource`` finds a signing key for
``jwks-operator sign``, and ``app`` assembles them around the server's snapshot store.
"""
