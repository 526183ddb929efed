"""Staff accounts, password hashing and database-backed sessions."""
