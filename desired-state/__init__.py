"""Packaged desired-state data: agent.schema.json and the default hm1nd agent."""
