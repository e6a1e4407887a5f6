"""shop: a small FastAPI service over PostgreSQL and Redis, run with either driver."""
