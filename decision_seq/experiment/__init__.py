"""The run recipe (train / eval), results.json, experiment tracking, job resources and the sweep summary."""
