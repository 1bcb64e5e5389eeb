"""bench/load_portal.py's settings: the portal's own, plus the bare view's route."""

from aladdin.settings import *  # noqa: F403

ROOT_URLCONF = "bench.load_urls"
