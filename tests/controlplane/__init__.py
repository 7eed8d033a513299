"""Test tooling: a real Kubernetes control plane built from its Go modules."""
