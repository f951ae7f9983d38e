"""A location (a path or an fsspec URL) becomes ranks, and the ranks are analyzed."""
