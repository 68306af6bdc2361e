"""The jobs behind the CLI: each wires data, an estimator, a run directory and the label store."""
