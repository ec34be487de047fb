"""Frame-accurate video decoding with PyAV (libdav1d for AV1), as LeRobot's `pyav` backend does.

Frames are picked by presentation time: seek to the keyframe before the first query, decode forward,
and take the decoded frame closest to each query. Decoding to `rgb24` with PyAV reproduces LeRobot's
tensors to float rounding (the YUV->RGB conversion is the same swscale path).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import av
import numpy as np

from rocket_core.errors import RocketError


def decode_video_frames(path: Path, timestamps: Sequence[float], tolerance_s: float) -> np.ndarray:
    """`(len(timestamps), H, W, 3)` uint8 frames of `path` at `timestamps` (seconds of video time)."""
    query = np.asarray(timestamps, dtype=np.float64)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise RocketError(f"cannot open video '{path}' ({exc}); re-download the dataset or re-encode it") from None
    with container:
        stream = container.streams.video[0]
        first, last = float(query.min()), float(query.max())
        container.seek(max(0, int(first / stream.time_base)), stream=stream, backward=True)  # type: ignore[operator]  # video streams have one
        times: list[float] = []
        frames: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                if frame.time is None or frame.time < first - tolerance_s:
                    continue
                times.append(frame.time)
                frames.append(frame.to_ndarray(format="rgb24"))
                if frame.time >= last - tolerance_s:
                    break
        except av.FFmpegError as exc:
            raise RocketError(f"video '{path}' is corrupt ({exc}); re-download the dataset") from None
    if not frames:
        raise RocketError(f"video '{path}' has no frame near {first:.4f} s; the episode metadata does not match the video")
    diff = np.abs(query[:, None] - np.asarray(times)[None, :])
    nearest = diff.argmin(axis=1)
    worst = diff[np.arange(len(query)), nearest].max()
    if worst > tolerance_s:
        raise RocketError(
            f"video '{path}' has no frame within {tolerance_s} s of a requested timestamp (off by {worst:.4f} s); "
            "the dataset's timestamps and videos disagree: re-encode the videos or fix meta/episodes"
        )
    return np.stack([frames[k] for k in nearest])
