"""Producing datasets: the built-in recipes, D4RL-style SAC builds, the D4RL importer, the catalog and Minari I/O."""
