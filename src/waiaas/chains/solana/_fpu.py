"""Give the x87 FPU back in x87 mode after LiteSVM ran a program (a defect of its JIT).

LiteSVM (``solders.litesvm``, solders 0.29, the newest release) runs on-chain programs with
the sBPF x86-64 JIT. The JIT parks the target of a register-indirect call (``callx``) in the
MMX register ``MM0`` and never executes ``EMMS`` afterwards, although the x86-64 ABI requires
the CPU to be in x87 mode at every call and return. Any MMX instruction marks all eight x87
registers as in use, so when the transaction returns to Python the calling thread's x87
stack is "full" (tag word ``0x0556``-like instead of ``0xffff``). The next x87 load (a
``long double`` in C code) overflows the stack and produces NaN:

* SQLite parses REAL literals and formats doubles with ``long double``:
  ``SELECT 1 + 0.5`` returns NULL and ``printf('%.2f', 1.5)`` returns ``'NaN'``;
* any other C code in the process that uses ``long double`` computes NaN.

Python's own float arithmetic (SSE) is not affected, nor is MXCSR. Programs that make
register-indirect calls include SPL Token, the Associated Token Account program and the stake
program; a plain system transfer runs no JIT code. Upstream: anza-xyz/sbpf issue 197 (the
JIT), LiteSVM pull request 398 (clears the state after each transaction; not in a solders
release yet).

glibc's ``fesetenv`` cannot repair this (it keeps the current tag word). ``EMMS`` does, and is
exactly the instruction the JIT omits, so :func:`leave_mmx_state` runs a three-byte routine
(``emms; ret``) from a page of its own, on the calling thread. The backend calls it after
every LiteSVM call that can run a program. Where the routine cannot be installed (not
x86-64, Windows, or a system that refuses executable anonymous memory), it does nothing and
:data:`AVAILABLE` is False.
"""

from __future__ import annotations

import ctypes
import mmap
import platform
import sys
from collections.abc import Callable

__all__ = ["AVAILABLE", "leave_mmx_state"]

_EMMS_RET = b"\x0f\x77\xc3"  # emms; ret


def _install() -> tuple[Callable[[], None] | None, object]:
    """The ``emms; ret`` routine on a read+execute page, and the page (kept alive)."""
    if sys.platform == "win32" or platform.machine().lower() not in ("x86_64", "amd64"):
        return None, None
    try:
        size = mmap.PAGESIZE
        page = mmap.mmap(-1, size, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        page.write(_EMMS_RET)
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        libc.mprotect.restype = ctypes.c_int
        if libc.mprotect(address, size, mmap.PROT_READ | mmap.PROT_EXEC) != 0:
            return None, None  # W^X policy: leave the state as LiteSVM left it
    except (OSError, AttributeError, ValueError):
        return None, None
    return ctypes.CFUNCTYPE(None)(address), page


_ROUTINE, _PAGE = _install()

AVAILABLE: bool = _ROUTINE is not None
"""Whether :func:`leave_mmx_state` can act on this platform."""


def leave_mmx_state() -> None:
    """Mark the calling thread's x87 registers empty again (``EMMS``); a no-op where
    unavailable (:data:`AVAILABLE` is false). Call it on the thread that called into
    LiteSVM, right after the call: ``SolanaAdapter.local()`` does so itself; code driving a
    ``LiteSVM`` directly must. Raises nothing.

    Example::

        from waiaas.chains.solana import leave_mmx_state

        try:
            svm.send_transaction(tx)
        finally:
            leave_mmx_state()
    """
    if _ROUTINE is not None:
        _ROUTINE()
