"""DMS replication: tasks, CloudWatch metrics, watching, starting and stopping, and the lint."""
