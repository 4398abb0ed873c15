"""Build the Cython extensions; everything else is in pyproject.toml."""
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).parent
extensions = [
    Extension(
        str(path.relative_to(ROOT).with_suffix("")).replace("/", "."),
        [str(path.relative_to(ROOT))],
        extra_compile_args=["-O2"],
    )
    for path in sorted((ROOT / "ccfast").rglob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
)
