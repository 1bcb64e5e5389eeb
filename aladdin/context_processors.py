from django.conf import settings


def portal(request):
    """Values every page's layout needs."""
    return {
        "LANGUAGES": settings.LANGUAGES,
        "local_insecure": settings.CLUSTER_DRIVER == "local" and settings.ALADDIN_LOCAL_INSECURE,
    }
