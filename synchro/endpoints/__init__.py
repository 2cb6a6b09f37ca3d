"""Where the trees live: what the pipeline reads from and writes into.

``local`` is the descriptor-based local file system (never following a
symlink, every name relative to an open folder).
"""
