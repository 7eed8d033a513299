"""jwks-operator: JSON Web Key Sets generated, rotated, stored and served as Kubernetes resources."""

__version__ = "0.1.0"
