"""Builds metaflow-dagster: the Python packages and the C extension metaflow_dagster._core.

The extension is the C core (core/*.c without json.c: the binding builds the IR from Python objects, so no
JSON library is needed) and the binding binding/_core.c, compiled with warnings as errors. MFD_SANITIZE=1
adds AddressSanitizer and UndefinedBehaviorSanitizer; Python must then run with libasan preloaded
(LD_PRELOAD=$(gcc -print-file-name=libasan.so)). Metadata is in pyproject.toml.
"""

import glob
import os

from setuptools import Extension, find_namespace_packages, setup


CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"]
LDFLAGS = []
if os.environ.get("MFD_SANITIZE") == "1":
    SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    CFLAGS += SANITIZE + ["-O1", "-g"]
    LDFLAGS += SANITIZE

core = sorted(path for path in glob.glob("core/*.c") if os.path.basename(path) != "json.c")

setup(
    # metaflow_extensions is a namespace package (no __init__.py, as Metaflow requires), which
    # find_packages would skip: find_namespace_packages finds it and the packages below it.
    packages=find_namespace_packages(
        include=["metaflow_dagster*", "metaflow_extensions*"], exclude=["*.__pycache__"]
    ),
    package_data={"": ["*.pyi"]},
    ext_modules=[
        Extension(
            "metaflow_dagster._core",
            sources=["binding/_core.c"] + core,
            include_dirs=["core"],
            depends=sorted(glob.glob("core/*.h")),
            extra_compile_args=CFLAGS,
            extra_link_args=LDFLAGS,
        )
    ],
)
