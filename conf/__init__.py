"""decision-seq's Hydra configs (top-level conf/, installed as the package decision_seq.conf).

Importing this package registers the typed schema behind the YAML (decision_seq.experiment.schema).
"""

from decision_seq.experiment.schema import register_configs

register_configs()
