"""`StreamedCKA`'s sketch path keeps memory flat as tokens grow, measured as peak RSS in a fresh interpreter."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

_MEMORY_PROBE = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {repo!r})
    from rocket_core.analysis.sketch import StreamedCKA

    def status(key):  # kB
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))

    def peak(feed):  # growth of the peak RSS (bytes) while feed() runs
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
        base = status("VmRSS:")
        feed()
        return (status("VmHWM:") - base) * 1024

    torch.set_num_threads(1)
    tokens, method = int(sys.argv[1]), sys.argv[2]
    n, layers, batch, width = 64, 4, 2, 64
    acc = StreamedCKA(n, method, sketch_dim=4096)

    def stream(add):  # a model hands over every layer's (B, tokens, width) per batch
        for start in range(0, n, batch):
            feats = {{k: torch.randn(batch, tokens, width) for k in range(layers)}}
            if add:
                acc.add(feats)
            del feats
        if add:
            acc.finish()

    inputs_only = peak(lambda: stream(False))
    print(inputs_only, peak(lambda: stream(True)))
""")


def peak_bytes(tokens: int, method: str = "sketch") -> tuple[int, int]:
    """Peak RSS growth (bytes) of streaming 64 samples x 4 layers of (tokens x 64) features in a fresh
    process: (making the input batches only, making them and feeding `StreamedCKA`)."""
    code = _MEMORY_PROBE.format(repo=str(REPO))
    out = subprocess.run([sys.executable, "-c", code, str(tokens), method], capture_output=True, text=True,
                         timeout=300, check=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                                       "MALLOC_MMAP_THRESHOLD_": "1048576"})  # freed batches go back
    inputs, total = map(int, out.stdout.split())
    return inputs, total


def test_sketch_memory_stays_flat_as_tokens_grow() -> None:
    """Tokens 256 vs 16384 per layer (16 K vs 1 M features per sample and layer).

    What the sketch path adds on top of the input batches (which the model produces anyway) stays the same:
    n x d per layer plus one block of `R`, whatever the token count. The exact path would keep
    n x tokens x 64 floats per layer (1 GB more at 16384 tokens).
    """
    small_in, small = peak_bytes(256)
    large_in, large = peak_bytes(16384)
    assert large_in - small_in > 24 << 20  # the inputs did grow (4 layers x 2 x 16384 x 64 floats = 32 MiB)
    small_extra, large_extra = small - small_in, large - large_in
    assert large_extra < 32 << 20 and large_extra - small_extra < 8 << 20, (small_extra, large_extra)
