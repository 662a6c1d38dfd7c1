"""Stage 1, batch prediction: `rtml precompute` and the artifacts it publishes."""
