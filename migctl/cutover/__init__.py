"""``migctl cutover``: the cutover runbook as code (docs/runbook.md).

- ``model.py``: a step (gate, action, check, undo); ``steps.py``: the fourteen steps.
- One module per step: ``preflight``, ``freeze`` (with ``fence``: the triggers
  and the DDL guard; ``decoding``: the WAL read through a logical slot),
  ``marker``, ``validation``, ``replication``, ``sequences``, ``proof``,
  ``release`` (rollout and post-checks), ``standby`` (the new image staged on the standby
  service, the listener switch, converge), ``baseline``, ``fallback``.
- ``journal.py`` (append-only JSON lines, local or S3), ``lock.py`` (one
  cutover per environment), ``state.py`` (the journal replayed).
- ``runbook.py``: run, resume; ``rollback.py``; ``overview.py``: plan and
  status; ``notify.py``: SNS notices.
"""
