"""`rocket doctor`: real probes of what evaluation and training need, one line each with the fix.

Rendering backends are probed through their C libraries (ctypes): EGL (`eglInitialize` on the default
and device displays), OSMesa (create a context), Vulkan (create an instance, list physical devices
with their type and extensions). Benchmarks run their own probes (LIBERO creates and renders a task;
RoboTwin tries to create SAPIEN's renderer in its environment).

Every check gets a level: `ok`, `info` (not applicable), `warning` or `error`. Errors are the failures
that matter for what was asked: the core checks (torch, the HF cache, plugins) always, a benchmark's
checks when that benchmark was asked for. Rendering and benchmarks nobody asked for only warn, and an
unreachable Hub warns (cached weights still load). `rocket doctor` exits 1 when any check is an error.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

from rocket_core.contracts import Check

Level = Literal["ok", "info", "warning", "error"]
HUB_PROBE_TIMEOUT_S = 3.0

VK_CPU = 4
_VK_TYPES = {0: "other", 1: "integrated GPU", 2: "discrete GPU", 3: "virtual GPU", 4: "CPU"}


def _load(*names: str) -> ctypes.CDLL | None:
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def check_torch() -> list[Check]:
    try:
        import torch
    except ImportError as exc:
        return [Check("torch", False, f"not importable ({exc})", "bash install.sh")]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return [Check("torch", True, f"{torch.__version__}, CUDA {torch.version.cuda}: {names}")]
    built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
    return [Check("torch", True, f"{torch.__version__} ({built}); no CUDA device: training and serving run on CPU",
                  "for GPU work install a CUDA build of torch on a machine with an NVIDIA driver")]


def probe_egl() -> dict[str, Any]:
    lib = _load("libEGL.so.1", "libEGL.so")
    if lib is None:
        return {"ok": False, "error": "libEGL.so.1 not found"}
    lib.eglGetProcAddress.restype = ctypes.c_void_p
    lib.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    lib.eglGetDisplay.restype = ctypes.c_void_p
    lib.eglGetDisplay.argtypes = [ctypes.c_void_p]
    lib.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
    lib.eglQueryString.restype = ctypes.c_char_p
    lib.eglQueryString.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.eglTerminate.argtypes = [ctypes.c_void_p]
    devices = 0
    query = lib.eglGetProcAddress(b"eglQueryDevicesEXT")
    get_platform = lib.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
    display = None
    if query and get_platform:  # what MuJoCo's EGL backend uses: the device platform
        qfn = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                               ctypes.POINTER(ctypes.c_int))(query)
        arr = (ctypes.c_void_p * 8)()
        n = ctypes.c_int(0)
        if qfn(8, arr, ctypes.byref(n)):
            devices = n.value
        if devices:
            gfn = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(get_platform)
            display = gfn(0x313F, arr[0], None)  # EGL_PLATFORM_DEVICE_EXT
    if not display:
        display = lib.eglGetDisplay(None)
    if not display:
        return {"ok": False, "error": "eglGetDisplay returned no display", "devices": devices}
    major, minor = ctypes.c_int(), ctypes.c_int()
    if not lib.eglInitialize(display, ctypes.byref(major), ctypes.byref(minor)):
        return {"ok": False, "error": "eglInitialize failed (no usable EGL driver: libegl-mesa0 or an NVIDIA driver)",
                "devices": devices}
    vendor = (lib.eglQueryString(display, 0x3053) or b"?").decode()  # EGL_VENDOR
    lib.eglTerminate(display)
    return {"ok": True, "version": f"{major.value}.{minor.value}", "vendor": vendor, "devices": devices}


def probe_osmesa() -> dict[str, Any]:
    lib = _load("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so")
    if lib is None:
        return {"ok": False, "error": "libOSMesa not found"}
    lib.OSMesaCreateContextExt.restype = ctypes.c_void_p
    lib.OSMesaCreateContextExt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.OSMesaDestroyContext.argtypes = [ctypes.c_void_p]
    ctx = lib.OSMesaCreateContextExt(0x1908, 24, 0, 0, None)  # OSMESA_RGBA
    if not ctx:
        return {"ok": False, "error": "OSMesaCreateContextExt failed"}
    lib.OSMesaDestroyContext(ctx)
    return {"ok": True}


class _VkInstanceCreateInfo(ctypes.Structure):
    _fields_ = [("sType", ctypes.c_int), ("pNext", ctypes.c_void_p), ("flags", ctypes.c_uint32),
                ("pApplicationInfo", ctypes.c_void_p), ("enabledLayerCount", ctypes.c_uint32),
                ("ppEnabledLayerNames", ctypes.c_void_p), ("enabledExtensionCount", ctypes.c_uint32),
                ("ppEnabledExtensionNames", ctypes.c_void_p)]


def probe_vulkan() -> dict[str, Any]:
    """Vulkan loader, instance and physical devices (name, type, device extensions)."""
    lib = _load("libvulkan.so.1", "libvulkan.so")
    if lib is None:
        return {"ok": False, "error": "no Vulkan loader (libvulkan.so.1)", "devices": []}
    instance = ctypes.c_void_p()
    info = _VkInstanceCreateInfo(sType=1)
    lib.vkCreateInstance.argtypes = [ctypes.POINTER(_VkInstanceCreateInfo), ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    rc = lib.vkCreateInstance(ctypes.byref(info), None, ctypes.byref(instance))
    if rc != 0:
        return {"ok": False, "error": f"vkCreateInstance failed (VkResult {rc}: no Vulkan driver / ICD)", "devices": []}
    lib.vkEnumeratePhysicalDevices.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32), ctypes.c_void_p]
    count = ctypes.c_uint32(0)
    lib.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), None)
    handles = (ctypes.c_void_p * max(count.value, 1))()
    lib.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), handles)
    lib.vkGetPhysicalDeviceProperties.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.vkEnumerateDeviceExtensionProperties.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                                         ctypes.POINTER(ctypes.c_uint32), ctypes.c_void_p]
    devices = []
    for k in range(count.value):
        props = ctypes.create_string_buffer(2048)
        lib.vkGetPhysicalDeviceProperties(handles[k], props)
        api = int.from_bytes(props.raw[0:4], "little")
        dtype = int.from_bytes(props.raw[16:20], "little")
        name = props.raw[20:276].split(b"\0", 1)[0].decode(errors="replace")
        n = ctypes.c_uint32(0)
        lib.vkEnumerateDeviceExtensionProperties(handles[k], None, ctypes.byref(n), None)
        buf = ctypes.create_string_buffer(260 * max(n.value, 1))
        lib.vkEnumerateDeviceExtensionProperties(handles[k], None, ctypes.byref(n), buf)
        exts = [buf.raw[i * 260: i * 260 + 256].split(b"\0", 1)[0].decode() for i in range(n.value)]
        devices.append({"name": name, "type": _VK_TYPES.get(dtype, str(dtype)), "cpu": dtype == VK_CPU,
                        "api": f"{api >> 22}.{(api >> 12) & 0x3FF}.{api & 0xFFF}", "extensions": exts})
    lib.vkDestroyInstance.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.vkDestroyInstance(instance, None)
    if not devices:
        return {"ok": False, "error": "Vulkan instance created but no physical device", "devices": []}
    return {"ok": True, "devices": devices}


def check_rendering() -> list[Check]:
    out = []
    egl = probe_egl()
    if egl["ok"]:
        out.append(Check("render EGL", True, f"EGL {egl['version']} ({egl['vendor']}), {egl['devices']} device(s); "
                         "MUJOCO_GL=egl works"))
    else:
        out.append(Check("render EGL", False, egl["error"], "apt-get install libegl1 libegl-mesa0 libgl1"))
    osm = probe_osmesa()
    out.append(Check("render OSMesa", True, "context created; MUJOCO_GL=osmesa works") if osm["ok"] else
               Check("render OSMesa", False, osm["error"], "apt-get install libosmesa6"))
    vk = probe_vulkan()
    if vk["ok"]:
        desc = "; ".join(f"{d['name']} ({d['type']}, Vulkan {d['api']})" for d in vk["devices"])
        out.append(Check("render Vulkan", True, desc))
    else:
        out.append(Check("render Vulkan", False, vk["error"], "apt-get install libvulkan1 mesa-vulkan-drivers "
                         "(CPU: lavapipe) or an NVIDIA driver"))
    return out


def probe_hub(endpoint: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """(reachable, what happened) for one HEAD request to the Hub endpoint; any HTTP answer means reachable."""
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout) as res:
            return True, f"HTTP {res.status}"
    except urllib.error.HTTPError as exc:
        return True, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:  # DNS, refused, timeout, proxy, bad URL
        reason = getattr(exc, "reason", exc)
        return False, " ".join(str(reason).split())[:160] or type(exc).__name__


def check_hf() -> list[Check]:
    """The HF cache (must be writable) and the Hub endpoint: offline (HF_HUB_OFFLINE), online or unreachable."""
    from huggingface_hub import constants

    cache = constants.HF_HUB_CACHE
    exists = os.path.isdir(cache)
    probe = cache
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    writable = os.access(probe, os.W_OK)
    repos = len([d for d in os.listdir(cache) if d.startswith(("models--", "datasets--"))]) if exists else 0
    out = [Check("Hugging Face cache", writable, f"{cache} ({repos} repos{'' if exists else ', not created yet'})",
                 "" if writable else f"make {cache} writable or set HF_HOME")]
    endpoint = constants.ENDPOINT
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        out.append(Check("Hugging Face hub", None, "offline (HF_HUB_OFFLINE=1): only cached repos load"))
        return out
    reachable, how = probe_hub(endpoint)
    if reachable:
        out.append(Check("Hugging Face hub", True, f"online: {endpoint} answered ({how})"))
    else:
        out.append(Check("Hugging Face hub", False, f"unreachable: {endpoint} ({how}); only cached repos load",
                         "check the network or proxy (HTTPS_PROXY), or set HF_HUB_OFFLINE=1 to work from the cache"))
    return out


def check_plugins() -> list[Check]:
    from rocket_core.registry import get_registry

    reg = get_registry()
    out = []
    counts: dict[str, list[str]] = {}
    for rec in reg.records():
        counts.setdefault(rec.kind, []).append(rec.name)
    out.append(Check("plugins", not reg.problems, "; ".join(f"{k}: {', '.join(v)}" for k, v in counts.items())))
    for p in reg.problems:
        out.append(Check(f"plugin package {p.source}", False, p.message, "fix, reinstall or uninstall that package"))
    return out


@dataclass(frozen=True)
class Finding:
    """A check with its level (see the module docstring)."""

    check: Check
    level: Level

    def to_json(self) -> dict[str, Any]:
        return {**self.check.__dict__, "level": self.level}


def _level(check: Check, failure: Level) -> Level:
    return "ok" if check.ok is True else "info" if check.ok is None else failure


def run_doctor(benchmarks: list[Any], probe_benchmarks: bool = True, requested: bool = False) -> list[Finding]:
    """Every check with its level; `requested`: the benchmarks were asked for, so their failures are errors."""
    found = [Finding(c, _level(c, "error")) for c in check_torch()]
    found += [Finding(c, _level(c, "warning")) for c in check_rendering()]  # benchmarks probe what they need
    for c in check_hf():  # the cache is core; an unreachable Hub only warns
        found.append(Finding(c, _level(c, "error" if c.name == "Hugging Face cache" else "warning")))
    found += [Finding(c, _level(c, "error")) for c in check_plugins()]
    for bench in benchmarks:
        try:
            checks = bench.doctor(quick=not probe_benchmarks)
        except Exception as exc:  # noqa: BLE001 - a broken probe is itself a finding
            checks = [Check(f"benchmark {bench.name}", False, f"probe crashed: {type(exc).__name__}: {exc}")]
        found += [Finding(c, _level(c, "error" if requested else "warning")) for c in checks]
    return found
