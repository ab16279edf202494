"""Integrations with the frameworks asyncdb's users live in (imported only when used)."""
