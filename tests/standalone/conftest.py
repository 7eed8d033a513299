"""Standalone-mode tests drive the real CLI; helpers live in ``support`` and ``observer``."""
