"""Exits 0 when the dotted module named by the one argument can be found on `sys.path`, else 1.

Found without importing it or its packages: importing a task package loads TensorFlow, seconds
the command would then spend a second time.
"""

import importlib.machinery
import importlib.util
import sys

path = None
for depth, part in enumerate(sys.argv[1].split(".")):
    if depth and path is None:  # a module, not a package, has no submodules
        sys.exit(1)
    # The top level through every finder (an editable install's too); below it, by path.
    spec = (importlib.machinery.PathFinder.find_spec(part, path) if depth
            else importlib.util.find_spec(part))
    if spec is None:
        sys.exit(1)
    path = spec.submodule_search_locations
