"""The reference's balanced layer rule (`get_balanced_layers`)."""
from __future__ import annotations


def balanced_layers(n: int, k: int) -> list[int]:
    """Pick k of n block indices spread evenly, deepest block always included; branch order matters."""
    if n < 1 or k < 1:
        raise ValueError("n and k must be positive")
    if k >= n:
        return list(range(n))
    if n % k == 0:
        step = n // k
        return sorted(n - 1 - i * step for i in range(k))
    if n % (n - k) == 0:
        step = n // (n - k)
        dropped = {i * step for i in range(n - k)}
        return [i for i in range(n) if i not in dropped]
    return sorted(int(n - 1 - i * n / k + 0.5) for i in range(k))


def balanced_branch(n: int, k: int) -> str:
    """Which rule `balanced_layers` took (reported by the fixtures)."""
    if k >= n:
        return "keep_all"
    if n % k == 0:
        return "select_stride"
    if n % (n - k) == 0:
        return "drop_stride"
    return "fallback_round"
