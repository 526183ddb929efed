"""Sales pipelines: the stages a deal moves through, as configuration admins manage."""
