"""The users bounded context: domain, persistence, service and HTTP routes."""
