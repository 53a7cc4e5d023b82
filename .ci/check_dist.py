"""Checks the built sdist and wheel hold what a packager relies on.

    python .ci/check_dist.py DIST_FOLDER

The wheel must carry the LICENSE (in its dist-info) and `py.typed`; the
sdist the LICENSE and the CHANGELOG. Metadata is checked by `twine check`.
"""

import pathlib
import sys
import tarfile
import zipfile

IN_THE_WHEEL = (".dist-info/licenses/LICENSE", "keras_scaled_l2/py.typed")


def main(folder):
    (wheel,) = folder.glob("*.whl")
    (sdist,) = folder.glob("*.tar.gz")
    in_wheel = zipfile.ZipFile(wheel).namelist()
    with tarfile.open(sdist) as archive:
        in_sdist = archive.getnames()
    missing = [
        f"{wheel.name}: {suffix}"
        for suffix in IN_THE_WHEEL
        if not _has(in_wheel, suffix)
    ] + [
        f"{sdist.name}: {name}"
        for name in ("LICENSE", "CHANGELOG.md")
        if not _has(in_sdist, f"/{name}")
    ]
    if missing:
        sys.exit("missing from the distributions: " + ", ".join(missing))
    print(f"{wheel.name}, {sdist.name}: LICENSE, py.typed, CHANGELOG.md in")


def _has(names, suffix):
    return any(name.endswith(suffix) for name in names)


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
