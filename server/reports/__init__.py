"""CRM reports: pipeline, win rate, cases and SLA breaches, interactions per channel."""
