"""The real-kernel side: the C probe, its compiler and the runner.

Only this package (and the lab) touch the system; the pure parts never import it.
"""

from ksmdiff.probe.runner import KernelRun, host_version, is_root, restore, run_kernel

__all__ = ["KernelRun", "host_version", "is_root", "restore", "run_kernel"]
