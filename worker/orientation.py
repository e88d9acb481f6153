"""Display orientation of a decoded video frame: FFmpeg's display matrix (from an MP4/MOV
``tkhd`` matrix, the old ``rotate`` tag, or an H.264/HEVC display-orientation SEI; attached to
every decoded frame as ``DISPLAYMATRIX`` side data) turned into the numpy operations that give
the frame as a player shows it.

The matrix ``[a b u; c d v; x y w]`` (16.16 fixed point) maps a stored pixel ``(p, q)`` (``p``
to the right, ``q`` down) to ``(a p + c q + x, b p + d q + y)`` on screen. Only the eight
right-angle transforms (rotations by 0/90/180/270 degrees, each optionally mirrored) are
applied; any other matrix (an arbitrary angle, a shear) is ignored and reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import av
import numpy as np


@dataclass(frozen=True)
class Orientation:
    """How to turn a stored frame into the displayed one: transpose first, then mirror.

    ``rotation`` (degrees counterclockwise, 0/90/180/270, FFmpeg's and PyAV's
    ``VideoFrame.rotation`` convention) and ``mirrored`` describe the same transform for people:
    the displayed frame is the stored frame rotated by ``rotation``, then mirrored left-right
    when ``mirrored`` (PyAV's ``set_display_rotation(rotation, hflip=mirrored)`` writes it).
    """

    transpose: bool = False
    hflip: bool = False
    vflip: bool = False
    rotation: int = 0
    mirrored: bool = False

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.hflip or self.vflip)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """The displayed frame of ``rgb uint8 [H, W, 3]``: ``[W, H, 3]`` when transposed (a
        view)."""
        out = rgb.transpose(1, 0, 2) if self.transpose else rgb
        if self.hflip:
            out = out[:, ::-1]
        if self.vflip:
            out = out[::-1]
        return out


IDENTITY = Orientation()

# (transpose, hflip, vflip) -> (rotation ccw, mirrored); rotate first, then mirror left-right
_NAMES: dict[tuple[bool, bool, bool], tuple[int, bool]] = {
    (False, False, False): (0, False),
    (False, True, True): (180, False),
    (True, False, True): (90, False),
    (True, True, False): (270, False),
    (False, True, False): (0, True),
    (False, False, True): (180, True),
    (True, False, False): (270, True),
    (True, True, True): (90, True),
}


def orientation_from_matrix(matrix: np.ndarray | None) -> Orientation:
    """The :class:`Orientation` of a 9-value display matrix (``int32``, FFmpeg layout); the
    identity for None or for a matrix that is no right-angle transform."""
    if matrix is None or len(matrix) != 9:
        return IDENTITY
    a, b, _, c, d, _ = (int(v) for v in matrix[:6])
    if b == 0 and c == 0 and a != 0 and d != 0:
        ops = (False, a < 0, d < 0)
    elif a == 0 and d == 0 and b != 0 and c != 0:
        ops = (True, c < 0, b < 0)
    else:  # not a right angle (or degenerate): left as stored
        return IDENTITY
    rotation, mirrored = _NAMES[ops]
    return Orientation(*ops, rotation=rotation, mirrored=mirrored)


def frame_display_matrix(frame: av.VideoFrame) -> np.ndarray | None:
    """``frame``'s display matrix as stored (``int32 [9]``, FFmpeg layout, the values PyAV's
    ``VideoStream.set_display_matrix`` writes back), from its ``DISPLAYMATRIX`` side data;
    None when it has none."""
    sides: Any = frame.side_data  # a SideDataContainer (PyAV's stub says motion vectors only)
    try:
        raw = bytes(sides["DISPLAYMATRIX"])
    except KeyError:
        return None
    return np.frombuffer(raw, "<i4").copy() if len(raw) == 36 else None


def frame_orientation(frame: av.VideoFrame) -> Orientation:
    """The orientation a player applies to ``frame`` (from its ``DISPLAYMATRIX`` side data)."""
    return orientation_from_matrix(frame_display_matrix(frame))

