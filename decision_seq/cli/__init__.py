"""Every command-line entry point (`decision-seq train|eval|datasets|leaderboard`) and console helper."""

from decision_seq.cli.main import main

__all__ = ["main"]
