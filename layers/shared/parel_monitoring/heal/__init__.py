"""Self-healing routines (the seed's lib/monitoring/self-healing).

Each routine takes what it repairs (a Database or a Redis client), its settings, a
:class:`~parel_monitoring.heal.budget.Budget` and ``dry_run``, and returns a dict with
at least ``count`` (rows/jobs healed, or that would be healed in a dry run) and
``partial`` (True when the budget ran out before the work was done; the next run
continues). Routines never raise for data they cannot heal; they raise for
infrastructure failures, which the run-all orchestrator isolates per routine.
"""
