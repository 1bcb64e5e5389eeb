"""Back-office reads: what the user 360° page, the queues and the overview show."""

from __future__ import annotations
