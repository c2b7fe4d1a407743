"""The HTML pages of the index."""
