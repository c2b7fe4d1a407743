"""The web layer: Pyramid views for the registry protocol (/v2/) and the pages."""
