"""A PEP 517 build backend in the standard library alone, so that
`pip install canary-userspace/python` works in a fresh venv offline: a
setuptools build needs `wheel` in the build environment, which pip would
fetch from PyPI (a Debian venv has setuptools but not wheel). The package is
pure Python, so a wheel is a zip of its files and three metadata files.
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

NAME = "canary_client"
DIST_NAME = "canary-client"
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(HERE, "canary")
SUMMARY = "Client of canaryd's control socket: run a canary rollout from a Python pipeline"


def _version():
    with open(os.path.join(PACKAGE, "__init__.py"), encoding="utf-8") as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


def _metadata():
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {DIST_NAME}\n"
        f"Version: {_version()}\n"
        f"Summary: {SUMMARY}\n"
        "License: MIT OR Apache-2.0\n"
        "Requires-Python: >=3.9\n"
        "Classifier: Typing :: Typed\n"
        "Description-Content-Type: text/markdown\n"
        "\n" + readme
    )


def _files():
    """(path in the wheel, path on disk): the package's modules and data."""
    for name in sorted(os.listdir(PACKAGE)):
        if name.endswith(".py") or name in ("py.typed", "protocol.json"):
            yield f"canary/{name}", os.path.join(PACKAGE, name)


def _wheel(wheel_directory, contents):
    version = _version()
    dist_info = f"{NAME}-{version}.dist-info"
    basename = f"{NAME}-{version}-py3-none-any.whl"
    files = list(contents) + [
        (f"{dist_info}/METADATA", _metadata().encode()),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: canary_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
    ]
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, basename), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files:
            z.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        z.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return basename


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def get_requires_for_build_wheel(config_settings=None):
    return []


get_requires_for_build_sdist = get_requires_for_build_wheel
get_requires_for_build_editable = get_requires_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, ((p, _read(d)) for p, d in _files()))


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """PEP 660: a .pth file that puts the source directory on sys.path."""
    return _wheel(wheel_directory, [(f"{NAME}.pth", (HERE + "\n").encode())])


def build_sdist(sdist_directory, config_settings=None):
    base = f"{NAME}-{_version()}"
    basename = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, basename), "w:gz") as t:
        for rel in ["pyproject.toml", "README.md", "_build/canary_build.py"] + [p for p, _ in _files()]:
            t.add(os.path.join(HERE, rel), arcname=f"{base}/{rel}")
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        data = _metadata().encode()
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return basename
