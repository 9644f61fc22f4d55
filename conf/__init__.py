"""decision-seq's Hydra configs (top-level conf/, installed as the package decision_seq.conf).

Importing this package registers the typed schema behind the YAML (decision_seq.experiment.schema).
"""

from pathlib import Path

from decision_seq.experiment.schema import register_configs

register_configs()

CONF_DIR = Path(__file__).parent


def model_yamls() -> dict[str, Path]:
    """Every model config (conf/model/<name>.yaml) by name, sorted: the models `model=<name>` can select."""
    return {path.stem: path for path in sorted((CONF_DIR / "model").glob("*.yaml"))}
