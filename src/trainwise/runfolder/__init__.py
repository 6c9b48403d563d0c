"""The run folder's files: writing them, run.json, the index, reading a saved run."""
