"""memrec: memory-network recommender systems.

Faithful implementations of the published memory-network recommenders on shared memory
primitives, honest evaluation (full ranking beside the papers' sampled protocols), one trainer
for all models, and a command-line tool.
"""

__version__ = "0.1.0"
