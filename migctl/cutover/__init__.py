"""``migctl cutover``: the cutover runbook as code (docs/runbook.md).

- ``model.py``: a step (gate, action, check, undo); ``steps.py``: the eight steps.
- One module per step: ``preflight``, ``freeze``, ``marker``, ``validation``,
  ``replication``, ``sequences``, ``release`` (rollout and post-checks).
- ``journal.py`` (append-only JSON lines, local or S3), ``lock.py`` (one
  cutover per environment), ``state.py`` (the journal replayed).
- ``runbook.py``: run, resume, roll back; ``notify.py``: SNS notices.
"""
