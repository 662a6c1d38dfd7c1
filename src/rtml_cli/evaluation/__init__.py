"""`rtml evaluate`: choosing between models — routing policies, off-policy estimators."""
