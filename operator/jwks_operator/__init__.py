"""jwks-operator: JSON Web Key Sets generated, rotated, stored and served from Kubernetes."""

__version__ = "0.1.0"
