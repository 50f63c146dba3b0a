"""Exits 0 when the dotted module named by the one argument can be found on `sys.path`, else 1.

Found without importing it or its packages: importing a task package loads TensorFlow, seconds
the command would then spend a second time.
"""

import importlib.machinery
import importlib.util
import sys

parts = sys.argv[1].split(".")
path = None
for depth in range(len(parts)):
    if depth and path is None:  # a module, not a package, has no submodules
        sys.exit(1)
    # The top level through every finder (an editable install's too); below it, by path.
    name = ".".join(parts[:depth + 1])
    spec = (importlib.machinery.PathFinder.find_spec(name, path) if depth
            else importlib.util.find_spec(name))
    if spec is None:
        sys.exit(1)
    path = spec.submodule_search_locations
