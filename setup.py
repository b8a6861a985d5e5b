"""The one compiled part: DATA's line scans in C (mailet_mta/smtp/_line_scan.c).

Everything else about the package is in pyproject.toml. The extension is optional:
without a C compiler or Python's headers the install says so and goes on, and the
server uses the pure-Python scans, which give the same answers but cost the reactor
thread about 0.2 ms more per 100 KB message (docs/BENCHMARKS.md).
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """``build_ext`` that leaves out an optional extension it could not build.

    setuptools only warns when an optional extension fails to compile, but still lists
    its file among the outputs, and an editable install then fails looking for it."""

    def build_extensions(self):
        super().build_extensions()
        built = [ext for ext in self.extensions
                 if not ext.optional or os.path.exists(self.get_ext_fullpath(ext.name))]
        for ext in self.extensions:
            if ext not in built:
                print(f"warning: {ext.name} was not built (no C compiler or no Python "
                      f"headers?): the server uses the pure-Python scans")
        self.extensions = built


setup(ext_modules=[Extension("mailet_mta.smtp._line_scan",
                             sources=["mailet_mta/smtp/_line_scan.c"],
                             optional=True)],
      cmdclass={"build_ext": OptionalBuildExt})
