"""Integration tests of shop against real PostgreSQL and Redis servers."""
