"""The back office: support staff's admin site, the user 360° page, queues, audit (SPEC §8).

The top layer of the project: it reads and acts through every app's
services and selectors, and no app imports it.
"""
