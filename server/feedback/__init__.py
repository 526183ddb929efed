"""Feedback: CSAT after a case, NPS surveys as campaigns, results under the small-group rule."""
