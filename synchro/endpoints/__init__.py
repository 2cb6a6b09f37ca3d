"""Where the trees live: what the pipeline reads from and writes into.

``local`` is the descriptor-based local file system (never following a
symlink, every name relative to an open folder). ``capabilities`` is the
record every endpoint fills in at the start of a run: what its replica can
hold (owners, permissions, links, the step of its times, whether it tells
case apart, which names it refuses).
"""
