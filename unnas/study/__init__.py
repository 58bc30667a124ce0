"""The sample-based study: train many architectures under several tasks and correlate their rankings.

Modules: ``archs`` (architecture lists), ``sampling`` (seeded random architectures), ``jobs``
(job keys and sharding), ``store`` (SQLite results store with leases), ``trainers`` (the pluggable
``train_fn``), ``runner`` (workers and progress), ``analysis`` (correlations, tables, plots),
``config`` (defaults). Entry point: ``tools/rank_corr.py``; guide: ``docs/rank_corr.md``.
"""
