"""hive-ag3nt / hive-m1nd: the turn loop, the hive MCP tools, the per-agent web UI."""
