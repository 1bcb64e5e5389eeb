"""``python -m aladdin.cluster.agent [--socket ...]``: the same as ``manage.py cluster_agent``.

The agent needs settings (paths, uid base, image map), so it runs as the
management command; this entry point only saves typing the manage.py path.
"""

import os
import sys


def main() -> None:
    # What manage.py sets, so both ways read the same settings.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aladdin.settings")
    os.environ.setdefault("DEBUG", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", "cluster_agent", *sys.argv[1:]])


if __name__ == "__main__":
    main()
