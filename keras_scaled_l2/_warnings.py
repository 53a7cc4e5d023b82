"""Warnings that point at the user's line, not at the package's."""

import sys
import types
import warnings

_PACKAGE = __name__.split(".")[0]


def warn_at_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """Warns, attributed to the first caller outside this package.

    A fixed `stacklevel` is right for one call depth only; the package's
    walks over nested layers call down to varying depths, so the frames
    are counted here instead.
    """
    frame: types.FrameType | None = sys._getframe(1)
    level = 2
    while frame is not None and _in_package(frame):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def _in_package(frame: types.FrameType) -> bool:
    name = frame.f_globals.get("__name__", "")
    return name == _PACKAGE or name.startswith(_PACKAGE + ".")
