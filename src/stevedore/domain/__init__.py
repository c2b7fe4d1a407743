"""The domain core: pure Python, standard library only. Nothing here knows about HTTP, SQL or files."""
