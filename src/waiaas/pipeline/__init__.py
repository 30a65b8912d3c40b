"""The transaction pipeline: state machine, stages, delays, approvals, kill switch, auto-stop."""
