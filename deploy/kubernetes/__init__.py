"""Kubernetes manifests: a generated kustomize base, hand-written overlays, offline checks."""
