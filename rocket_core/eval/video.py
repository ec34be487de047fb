"""MP4 writing for episode videos: PyAV when installed, else imageio (import-light)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


def write_mp4(path: str | os.PathLike[str], frames: Sequence[np.ndarray], fps: int = 20) -> Path:
    """Write uint8 (H, W, 3) frames (even sides are padded in) as H.264 MP4, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not frames:
        raise ValueError("no frames to write")
    h, w = frames[0].shape[:2]
    H, W = h + h % 2, w + w % 2
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.mp4")
    try:
        import av
    except ImportError:
        av = None  # type: ignore[assignment]  # optional: imageio writes the file instead
    if av is not None:
        with av.open(str(tmp), mode="w") as box:
            stream = box.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            for f in frames:
                canvas = np.zeros((H, W, 3), np.uint8)
                canvas[:h, :w] = f
                for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                    box.mux(packet)
            for packet in stream.encode():
                box.mux(packet)
    else:
        import imageio.v2 as imageio

        with imageio.get_writer(str(tmp), fps=fps, codec="libx264", macro_block_size=1) as writer:
            for f in frames:
                canvas = np.zeros((H, W, 3), np.uint8)
                canvas[:h, :w] = f
                writer.append_data(canvas)
    tmp.replace(path)
    return path


def count_frames(path: str | os.PathLike[str]) -> int:
    """Decoded frame count of a video (PyAV)."""
    import av

    with av.open(str(path)) as box:
        return sum(1 for _ in box.decode(video=0))
