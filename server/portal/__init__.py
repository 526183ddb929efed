"""The customer self-service portal: sign-in by e-mailed link, requests, downloads."""
