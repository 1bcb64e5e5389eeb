from django.apps import AppConfig


class ClusterConfig(AppConfig):
    name = "aladdin.cluster"
    label = "cluster"
    verbose_name = "Cluster"
