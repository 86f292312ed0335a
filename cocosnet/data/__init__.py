"""Dataset adapters, manifests and pair lists."""
