"""The register of recipients and processors, and the Art. 19 notices they are sent."""
