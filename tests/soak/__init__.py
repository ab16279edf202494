"""A chaos soak: concurrent money transfers under injected faults, then invariant checks."""
