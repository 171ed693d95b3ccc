"""Speed and scale measurements; run as modules from the repository root."""
