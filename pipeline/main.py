"""`spark-submit pipeline/main.py CONFIG [--set key=value ...]`: the same driver as
`longmix prepare CONFIG`, as a script Spark can be handed."""

import sys

from longmix.pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
