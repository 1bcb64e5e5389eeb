"""The Kubernetes backend (issue 19): its manifests, its errors, its driver on the API-server stub."""
