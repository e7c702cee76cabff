"""hive-broker: durable messaging between operator, manager and agents."""
