"""longmix: long-context training data (the ProLong recipe) prepared with Spark, as MDS shards.

The command is `longmix` (`python -m longmix`); the library is this package's functions
(`longmix.api`). `longmix.pipeline` holds the driver, outputs and command line,
`longmix.stages` the Spark stages and their per-partition logic.
"""

from longmix.api import Prepared, prepare, stats, streaming_args, tokenizer, validate
from longmix.pipeline import __version__

__all__ = ["Prepared", "__version__", "prepare", "stats", "streaming_args", "tokenizer", "validate"]
