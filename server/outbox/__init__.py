"""The durable mail queue: e-mails that could not go out at once are retried with backoff."""
