"""The accelerators the planner knows: dense 16-bit peak FLOP/s and memory, with sources.

>>> from flopgrad.planning.hardware import GPUS
>>> GPUS["a100"].peak_flops / 1e12, GPUS["a100"].memory_bytes / 1e9
(312.0, 80.0)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GPU", "GPUS"]


@dataclass(frozen=True)
class GPU:
    """Dense (no sparsity) 16-bit tensor-core peak and memory of one accelerator.

    >>> import flopgrad as fg
    >>> h100 = fg.planning.GPUS["h100"]
    >>> h100.name, h100.peak_flops / 1e12, h100.memory_bytes / 1e9
    ('NVIDIA H100 SXM', 989.0, 80.0)
    """

    name: str
    peak_flops: float  # FLOP/s, dense BF16/FP16
    memory_bytes: float
    source: str
    memory_bandwidth: float | None = None  # bytes/s of HBM
    nvlink_bandwidth: float | None = None  # bytes/s per GPU, one direction, within a node
    network_bandwidth: float | None = None  # bytes/s per GPU between nodes (one NIC)
    bandwidth_source: str = ""


GPUS: dict[str, GPU] = {
    "b200": GPU("NVIDIA B200", 2.25e15, 192e9, "NVIDIA DGX B200 datasheet: 2.25 PFLOPS dense BF16",
                8e12, 900e9, 50e9, "DGX B200: HBM3e 8 TB/s, NVLink 5 1.8 TB/s (900 GB/s a "
                "direction), ConnectX-7 400 Gb/s per GPU"),
    "h200": GPU("NVIDIA H200 SXM", 989e12, 141e9, "NVIDIA H200 datasheet: 989 TFLOPS BF16 dense",
                4.8e12, 450e9, 50e9, "H200 datasheet: HBM3e 4.8 TB/s, NVLink 900 GB/s (450 a "
                "direction); 400 Gb/s InfiniBand NDR per GPU"),
    "h100": GPU("NVIDIA H100 SXM", 989e12, 80e9, "NVIDIA H100 datasheet: 1,979 TFLOPS BF16 "
                "with sparsity, 989 dense", 3.35e12, 450e9, 50e9, "H100 SXM datasheet: HBM3 "
                "3.35 TB/s, NVLink 900 GB/s (450 a direction); DGX H100: 400 Gb/s InfiniBand "
                "NDR per GPU"),
    "h100-pcie": GPU("NVIDIA H100 PCIe", 756e12, 80e9, "NVIDIA H100 datasheet: 1,513 with "
                     "sparsity, 756 dense"),
    "a100": GPU("NVIDIA A100 SXM 80GB", 312e12, 80e9, "NVIDIA A100 datasheet: 312 TFLOPS "
                "BF16 dense", 2.039e12, 300e9, 25e9, "A100 80GB SXM datasheet: HBM2e 2,039 "
                "GB/s, NVLink 600 GB/s (300 a direction); DGX A100: 200 Gb/s HDR per GPU"),
    "a100-40gb": GPU("NVIDIA A100 40GB", 312e12, 40e9, "NVIDIA A100 datasheet"),
    "l4": GPU("NVIDIA L4", 121e12, 24e9, "NVIDIA L4 datasheet: 242 TFLOPS FP16 with sparsity, "
              "121 dense"),
    "a10g": GPU("NVIDIA A10G", 125e12, 24e9, "NVIDIA A10 datasheet: 125 TFLOPS FP16 dense"),
    "v100": GPU("NVIDIA V100 SXM2 32GB", 125e12, 32e9, "NVIDIA V100 datasheet: 125 TFLOPS "
                "FP16 tensor"),
    "mi300x": GPU("AMD Instinct MI300X", 1307.4e12, 192e9, "AMD MI300X datasheet: 1,307.4 "
                  "TFLOPS BF16 dense"),
}
