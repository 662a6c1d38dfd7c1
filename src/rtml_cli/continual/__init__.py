"""Continual learning: drift detection (`rtml drift`) and retraining schedules (`rtml retrain`)."""
