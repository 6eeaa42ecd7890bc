"""PostgreSQL, the only source of truth. All SQL of the product lives in this package."""
