"""The REST shape shared by every record type that the data map declares."""
