"""hive-c0re: desired state in git, reconcile loop, approvals, admin, dashboard."""
