"""The knowledge base: help articles staff write and customers read (issue 21, item 4)."""
