"""What every workload app (workshops, GPU jobs) shares: the machinery, not the rules.

- ``quota``: the user's CPU/memory quota, counted over every workload app.
- ``space``: the user space a workload needs first (volume, quota on the
  cluster) and the platform's environment variables.
- ``env``: a workload's secret ENV (encrypted with a key derived from
  SECRET_KEY) and the KEY=VALUE text users type.
- ``models``: the image catalog and the platform variables both apps read.
- ``reconcile``: the level-triggered skeleton both reconcilers run.
- ``consumers``: the web terminal, whichever workload it opens.

Dependency direction (DESIGN.md, docs/architecture.md): this package
imports only what lies below it (storage, billing, the cluster driver,
aladdin.lib); workshops and gpu_jobs import it; it never imports them. What an app must add (its usage in the quota,
its rows in a reconcile pass, which workload a terminal opens) it passes
in: a registered provider, a subclass.
"""
