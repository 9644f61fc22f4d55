"""Producing datasets (what training reads of them is decision_seq/data/). The command line is cli/datasets.py.

- naming.py      dataset ids and level names, defined once
- builtin.py     the built-in Pendulum / CartPole recipes, built on first use
- sac/           D4RL-style datasets from a SAC behaviour agent (`datasets build`)
- d4rl.py        importing D4RL's MuJoCo files (`datasets import-d4rl`); d4rl_files.py reads them
- catalog.py     the datasets the suite knows, and what is known of a local one (`datasets list|info`)
- minari_io.py   atomic dataset writes, local lookups, the Minari remote
- rollouts.py    playing a policy into Minari episodes, reference returns on fixed seeds
"""
