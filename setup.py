"""The one compiled part: DATA's line scans in C (mailet_mta/smtp/_line_scan.c).

Everything else about the package is in pyproject.toml. The extension is optional:
without a C compiler or Python's headers the install goes on and the server uses the
pure-Python scans, which give the same answers but cost the reactor thread about
0.2 ms more per 100 KB message (docs/BENCHMARKS.md).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("mailet_mta.smtp._line_scan",
                             sources=["mailet_mta/smtp/_line_scan.c"],
                             optional=True)])
