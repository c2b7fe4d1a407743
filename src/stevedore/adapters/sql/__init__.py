"""SQL adapters: tables, engine and session setup, and the stores that implement the metadata ports."""
