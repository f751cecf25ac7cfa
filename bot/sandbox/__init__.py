"""Spec-faithful simulators of HighLevel and Slack, for tests, the demo and dry runs."""
