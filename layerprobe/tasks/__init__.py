"""One module per task: an offline generator or built-in data, plus loaders of the public formats."""
