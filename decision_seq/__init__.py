"""decision-seq: return-conditioned sequence models (Decision Transformer, Decision Mamba) for offline RL."""

__version__ = "0.1.0"
