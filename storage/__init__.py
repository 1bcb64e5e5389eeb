"""Per-user volumes: usage samples, daily peaks, nightly charges, expansion, retention."""
