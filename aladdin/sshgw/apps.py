from django.apps import AppConfig


class SshGatewayConfig(AppConfig):
    """The SSH gateway process (``manage.py ssh_gateway``); no models."""

    name = "aladdin.sshgw"
    label = "sshgw"
