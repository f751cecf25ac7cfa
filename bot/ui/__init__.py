"""Pure Block Kit builders: functions from data to slack_sdk model objects, no I/O."""
