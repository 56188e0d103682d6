"""Runs several `fkp` commands one after the other in one process: a single `torchrun` launch
then trains and predicts in the same process group (a group cannot be started twice in one
launch). Usage: `torchrun ... tests/engine/model/fkp_commands.py '[["train", ...], ["predict", ...]]'`."""

import json
import sys

from engine.cli import main

if __name__ == "__main__":  # the loader's fork server imports this module: no work at import
    for argv in json.loads(sys.argv[1]):
        code = main(argv)
        if code:
            sys.exit(code)
