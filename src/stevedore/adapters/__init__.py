"""Adapters: the ports implemented with real technology (SQLAlchemy, the filesystem, S3, bcrypt, SMTP)."""
