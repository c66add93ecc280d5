"""Local stand-ins for remote services, started by test fixtures."""
