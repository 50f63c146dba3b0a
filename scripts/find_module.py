"""Exits 0 when the dotted module named by the one argument can be found, else 1.

Found without importing it or its packages (importing a task package loads TensorFlow, seconds
the command would then spend a second time): the top-level package through Python's finders
(an editable install's included), the rest as files and directories below it.
"""

import importlib.util
import os
import sys

top, *rest = sys.argv[1].split(".")
spec = importlib.util.find_spec(top)
if spec is None:
    sys.exit(1)
directories = list(spec.submodule_search_locations or [])
for depth, part in enumerate(rest, 1):
    if depth == len(rest) and any(os.path.isfile(os.path.join(d, f"{part}.py"))
                                  for d in directories):
        sys.exit(0)
    directories = [os.path.join(d, part) for d in directories
                   if os.path.isdir(os.path.join(d, part))]
    if not directories:
        sys.exit(1)
