"""unnas: unsupervised neural architecture search (DARTS with pretext objectives)."""
__version__ = "0.1.0"
