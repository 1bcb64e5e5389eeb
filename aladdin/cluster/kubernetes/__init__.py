"""The Kubernetes backend of the cluster driver (issue 19)."""
