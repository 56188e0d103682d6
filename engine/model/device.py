"""Where the networks run: CUDA when there is one, else the CPU; mixed precision on CUDA only."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)
# Torch's intra-op thread count before anything set it: its physical cores, or OMP_NUM_THREADS.
_TORCH_STARTUP_THREADS = torch.get_num_threads()


def pick_device(prefer: str | None = None) -> torch.device:
    """`prefer` ("cpu", "cuda", "cuda:1") if usable, else CUDA when available, else the CPU.

    A name that is no device, or a GPU index beyond those present, raises ValueError."""
    if prefer:
        try:
            dev = torch.device(prefer)
        except RuntimeError:
            raise ValueError(f"{prefer!r} is not a device: use cpu, cuda or cuda:N") from None
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"{prefer!r}: only cpu and cuda devices are supported")
        if dev.type == "cuda" and not torch.cuda.is_available():
            log.warning("CUDA requested but not available; using the CPU")
            return torch.device("cpu")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{prefer!r}: there are {torch.cuda.device_count()} CUDA devices")
        return dev
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def usable_cpus() -> int:
    """The logical CPUs this process may run on (its affinity; every CPU where that is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def predict_threads(cpus: int | None = None, limit: int | None = None) -> int:
    """The torch threads prediction runs on the CPU with: one per usable CPU (`cpus`, default this
    process's affinity, which torch's own count ignores in some versions: `taskset`, containers),
    at most `limit` (default torch's own count at startup: its physical cores, or
    `OMP_NUM_THREADS`).

    Measured with `benchmarks/bench_predict_threads.py` (docs/benchmarks.md, issue 29 item 13):
    once waiting threads sleep (`OMP_WAIT_POLICY=PASSIVE`, set in `engine/__init__.py`), two
    threads on 2 CPUs predict faster than one (best of 3: 1.15x idle, 1.35x beside a busy
    process); the second thread was slower only while OpenMP's waiting threads spun (8-20x
    slower on a shared machine)."""
    own = _TORCH_STARTUP_THREADS if limit is None else limit
    return max(1, min(usable_cpus() if cpus is None else cpus, own))


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Torch's CPU threads set to `threads` (None: left as they are) in this block, then back."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the chosen GPU computes it natively, fp16 (with a GradScaler) on older GPUs,
    None (full precision) on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if native_bf16(device) else torch.float16


def native_bf16(device: torch.device) -> bool:
    """Whether the CUDA device computes bf16 in hardware (compute capability 8.0, Ampere, or newer).

    `torch.cuda.is_bf16_supported()` alone also says yes where bf16 is only emulated (V100, T4:
    slow, and fp16 with loss scaling is the fast choice there), and it asks about the current
    device rather than this one; it is consulted (without emulation) only for the current device.
    """
    if device.type != "cuda":
        return False
    if torch.version.hip:
        return bool(torch.cuda.is_bf16_supported())
    index = device.index if device.index is not None else torch.cuda.current_device()
    if tuple(torch.cuda.get_device_capability(index)) < (8, 0):
        return False
    if index == torch.cuda.current_device():
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # older torch without the argument: the capability decides
            return True
    return True


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed-precision autocast on CUDA; a no-op context on the CPU."""
    dtype = amp_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def needs_grad_scaler(device: torch.device) -> bool:
    """fp16 needs loss scaling; bf16 and fp32 do not."""
    return amp_dtype(device) == torch.float16


def memory_format_for(device: torch.device) -> torch.memory_format:
    """channels-last on CUDA (faster convolutions with tensor cores), contiguous on the CPU."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a model to the device in the memory format that suits it.

    On CUDA, cuDNN then benchmarks its convolution algorithms once per input shape and keeps the
    fastest: the keypoint net sees few shapes (one crop size, a few batch sizes). The flag is the
    process's: the detector, too, pays one benchmark per new image size."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return model.to(device=device, memory_format=memory_format_for(device))


def prepare_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move an image batch (B, 3, H, W) to the device in the matching memory format."""
    return x.to(device=device, memory_format=memory_format_for(device), non_blocking=True)


def describe_device(device: torch.device) -> str:
    """A short label for the user: "CUDA (NVIDIA H100, bf16 AMP)" or "CPU (2 threads)"."""
    if device.type == "cuda":
        dtype = amp_dtype(device)
        amp = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
        return f"CUDA ({torch.cuda.get_device_name(device)}, {amp} AMP)"
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' if n != 1 else ''})"


def release_gpu_cache() -> None:
    """Give the GPU memory PyTorch keeps cached back to the driver, when this process has started
    CUDA (never starts it for that)."""
    try:
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:  # a broken driver must not stop the caller; its next CUDA call will say so
        log.exception("cannot release the cached GPU memory")


# RuntimeErrors that mean the GPU ran out of memory (the caching allocator raises
# torch.OutOfMemoryError; cuDNN, cuBLAS and CUDA calls report it in their own words).
_GPU_OOM = ("out of memory", "cudnn_status_alloc_failed", "cublas_status_alloc_failed")


def out_of_memory_kind(error: BaseException) -> str | None:
    """"GPU memory" or "memory" (the host's: a MemoryError, torch's CPU allocator failing) when
    `error` is running out of it, None for any other error."""
    text = str(error).lower()
    if isinstance(error, MemoryError) or "defaultcpuallocator" in text:
        return "memory"
    if isinstance(error, torch.OutOfMemoryError) or (isinstance(error, RuntimeError)
                                                      and any(s in text for s in _GPU_OOM)):
        return "GPU memory"
    return None


def out_of_memory_message(error: BaseException, phase: str) -> str | None:
    """The user's one line for running out of memory during `phase`, None for any other error:
    "out of GPU memory during <phase>: try a smaller batch or the CPU" (host memory: "out of
    memory during <phase>: try a smaller batch")."""
    kind = out_of_memory_kind(error)
    if kind is None:
        return None
    return f"out of {kind} during {phase}: try a smaller batch" + (" or the CPU" if kind == "GPU memory" else "")
