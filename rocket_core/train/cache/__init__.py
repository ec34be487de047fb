"""Teacher-feature cache: the frozen teacher's targets, computed once per dataset row and stored on disk.

Keyed by content, never by pixels: one cache namespace per (dataset fingerprint, camera map, image size,
teacher name + plugin version + checkpoint/revision/preset/options + shape facts, stored layer set, store
kind and pooling, storage dtype); inside it one entry per dataset row, filed under its episode and frame
(`<root>/<teacher>-<key16>/ep<episode>/<frame>.safetensors`). Every entry holds the features of the
row's *canonical view* (all cameras, resized, before any crop or colour jitter), so the key does not
depend on augmentation. VGGT attends across the cameras of a sample, so an entry covers the whole
camera set, not one camera.

Two store kinds (docs/cache.md):
  pooled  (L, N, C) pooled targets of the selected layers: what the alignment head consumes, smallest and
          cheapest at hit time (one read, one stack, one host-to-device copy). Used without geometric
          augmentation.
  grid    (L, S, P, C) raw patch grids: a batch's crop boxes are applied to the cached grid (bilinear
          resampling of the box, an approximation of running the teacher on the cropped image), then the
          grid is pooled. Needed for random crops (or random pooling).

An entry is a safetensors file with one tensor and metadata holding the namespace key, its row and the
sha256 of the tensor bytes; it is written to a temporary name and renamed into place. A read checks the
header, shape, dtype, key, row and checksum; an entry failing any check is reported (a warning and the
`corrupt` counter), recomputed and rewritten, never us

Modules: `layout` (what an entry holds, sizes, the cache folder), `key` (the namespace key), `crop` (crop
boxes on the cached grid), `store` (entry files and checksums), `teacher_cache` (what the trainer and
`rocket cache build` use: lookup, prefetch buffers, build).
"""
from rocket_core.train.cache.crop import TeacherView, crop_grids
from rocket_core.train.cache.layout import HEADER_BYTES, Layout, Pooling, check_disk, default_cache_dir, format_bytes
from rocket_core.train.cache.store import CacheStore, Corrupt
from rocket_core.train.cache.teacher_cache import CacheStats, TeacherCache

__all__ = ["HEADER_BYTES", "CacheStats", "CacheStore", "Corrupt", "Layout", "Pooling", "TeacherCache", "TeacherView",
           "check_disk", "crop_grids", "default_cache_dir", "format_bytes"]
