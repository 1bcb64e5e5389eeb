# The image of each user's small "files" pod (ALADDIN_KUBERNETES_FILES_IMAGE):
# the Kubernetes backend runs it over the user's /root volume and execs
# into it for the files page (OpenSSH's sftp-server), kept logs (cat,
# tail) and volume usage (du). Nothing of the portal is in it.
#
#   docker build -f deploy/kubernetes/files.Dockerfile -t registry.example.edu/aladdin/files:1 deploy/kubernetes
FROM debian:12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-sftp-server \
    && rm -rf /var/lib/apt/lists/*
