"""What this process may use of the CPU: its instruction-set flags and its cores.

The one place that decides two CPU defaults, for training and scoring alike:

* **bf16**: ``precision: auto`` scores in bf16 on a CPU only where the silicon does bf16 natively
  (``amx_bf16`` or ``avx512_bf16`` in ``/proc/cpuinfo``); elsewhere torch would emulate it, slower
  than fp32 (see :func:`native_bf16`).
* **threads**: torch's intra-op threads default to the cores this process may use, the smaller of
  its CPU affinity (``os.sched_getaffinity``) and its cgroup CPU quota (``/sys/fs/cgroup/cpu.max``,
  cgroup v1's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up (see :func:`usable_cores`).
  torch itself counts the machine's cores, so in a container limited to 2 CPUs of a 64-core host it
  would start 64 threads that fight over 2 cores. An explicit ``train.num_threads`` or
  ``OMP_NUM_THREADS`` wins, and a lower count already set in the process (``torch.set_num_threads``)
  is kept: the default only ever lowers torch's count (see :func:`apply_threads`).
* **serve threads**: ``assay serve`` scores on one thread (the inference owner) while its event loop
  parses requests and writes responses on another; its intra-op threads default to the usable cores
  less one, at least 1, so the loop keeps a core (see :func:`serve_threads`; ``ASSAY_SERVE_THREADS``
  or ``assay serve --threads`` set it, an explicit ``OMP_NUM_THREADS`` wins as above).
"""

from __future__ import annotations

import math
import os
from typing import Iterable

from .errors import AssayError

CPUINFO = "/proc/cpuinfo"
CPU_MAX = "/sys/fs/cgroup/cpu.max"  # cgroup v2: "<quota> <period>" or "max <period>"
CFS_QUOTA = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"  # cgroup v1: -1 for no quota
CFS_PERIOD = "/sys/fs/cgroup/cpu/cpu.cfs_period_us"
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # either one: bf16 matmuls in hardware
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # set by the user: their count is kept
SERVE_THREADS_ENV = "ASSAY_SERVE_THREADS"  # the server's intra-op threads (assay serve --threads)


def cpu_flags(path: str = CPUINFO) -> frozenset[str]:
    """The first CPU's ``flags`` in ``/proc/cpuinfo`` (empty where there is no such file)."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def native_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AMX or AVX512-BF16), from its flags, never assumed."""
    have = cpu_flags() if flags is None else set(flags)
    return any(f in have for f in BF16_FLAGS)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return None


def parse_cpu_max(text: str | None) -> float | None:
    """CPUs granted by cgroup v2's ``cpu.max`` text (``"150000 100000"`` -> 1.5; ``"max 100000"`` -> None)."""
    parts = (text or "").split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    return parse_cfs(parts[0], parts[1])


def parse_cfs(quota: str | None, period: str | None) -> float | None:
    """CPUs granted by a quota and period in microseconds (cgroup v1: quota -1 means none)."""
    try:
        q, p = float(quota or -1), float(period or -1)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def cgroup_quota() -> float | None:
    """This process's cgroup CPU quota in CPUs (v2 ``cpu.max``, else v1 CFS files), None without one."""
    text = _read(CPU_MAX)
    if text is not None:
        return parse_cpu_max(text)
    return parse_cfs(_read(CFS_QUOTA), _read(CFS_PERIOD))


def usable_cores(affinity: Iterable[int] | None = None, quota: float | None | str = "read") -> int:
    """The cores this process may use: its CPU affinity, capped by its cgroup quota (rounded up), at least 1.

    ``affinity``: the CPU ids (default ``os.sched_getaffinity(0)``, else ``os.cpu_count()``);
    ``quota``: CPUs (default: read from the cgroup files by :func:`cgroup_quota`; None: no quota).
    """
    if affinity is None:
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not Linux
            n = os.cpu_count() or 1
    else:
        n = len(set(affinity))
    q = cgroup_quota() if quota == "read" else quota
    if q is not None:
        n = min(n, math.ceil(float(q) - 1e-9))
    return max(1, n)


def apply_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads: ``requested`` when given, else at most :func:`usable_cores`.

    Without a request the count is only ever lowered, and left alone when ``OMP_NUM_THREADS`` or
    ``MKL_NUM_THREADS`` is set. Returns the count in effect.
    """
    import torch

    if requested:
        torch.set_num_threads(int(requested))
    elif not any(os.environ.get(k) for k in THREAD_ENV):
        cap = usable_cores()
        if torch.get_num_threads() > cap:
            torch.set_num_threads(cap)
    return int(torch.get_num_threads())


def serve_threads(usable: int | None = None) -> int | None:
    """The server's intra-op threads: ``ASSAY_SERVE_THREADS`` when set, None (torch's count is left
    alone) when ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` is set, else the usable cores less one for the
    event loop, at least 1 (``usable``: default :func:`usable_cores`).

    Measured on 2 usable cores (``benchmarks/results/serve_batching.md``): 1 thread beside the loop
    beat 2 threads, which fight the event loop and the clients for the same two cores."""
    raw = os.environ.get(SERVE_THREADS_ENV, "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n < 1:

            raise AssayError(f"{SERVE_THREADS_ENV}: a whole number of threads, at least 1", repr(raw),
                             f"unset {SERVE_THREADS_ENV} or set it to e.g. 1", code="invalid_config")
        return n
    if any(os.environ.get(k) for k in THREAD_ENV):
        return None
    return max(1, (usable_cores() if usable is None else usable) - 1)
