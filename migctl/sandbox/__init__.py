"""The local rehearsal environment (``migctl sandbox``)."""
