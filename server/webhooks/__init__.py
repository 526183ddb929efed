"""Signed webhooks (Standard Webhooks) and the transactional outbox they are fed from."""
