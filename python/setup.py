"""Builds primaps-serve: the package plus its generated gRPC modules.

The modules are generated from the repository's proto/ (or $PRIMAPS_PROTO_DIR)
at build time, offline:

    pip install --no-build-isolation ./python
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate_stubs  # noqa: E402


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        proto_dir = os.environ.get("PRIMAPS_PROTO_DIR", os.path.join(here, "..", "proto"))
        if not os.path.isdir(os.path.join(proto_dir, "primaps", "v1")):
            sys.exit(f"setup.py: no primaps/v1 protos under {proto_dir}; set PRIMAPS_PROTO_DIR")
        generate_stubs.generate(proto_dir, self.build_lib)


setup(cmdclass={"build_py": BuildWithStubs})
