"""Multi-process training under `torchrun`: one process per GPU, DistributedDataParallel.

    torchrun --nproc_per_node=4 -m fakelab train --config vox-256 --data DIR -o RUN

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; each process drives GPU
LOCAL_RANK (NCCL) or, without GPUs, the CPU (gloo). On GPUs with more than one
process, batch norms are synchronised across processes (SyncBatchNorm), so that
statistics come from the whole batch as in the reference's synchronised
DataParallel; PyTorch's SyncBatchNorm has no CPU kernel, so CPU processes
normalise their own share of the batch. Without torchrun, training runs in this
one process and nothing is wrapped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    launched: bool = False  # started by torchrun: models are wrapped in DDP, even for one process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> ProcessGroup:
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return cls()
        return cls(
            rank=int(os.environ["RANK"]),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            world_size=int(os.environ["WORLD_SIZE"]),
            launched=True,
        )

    def device(self, requested: str) -> torch.device:
        """`auto`: this process's GPU when there are GPUs, else the CPU."""
        if requested == "auto":
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(requested)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank)
        return device

    def start(self, device: torch.device) -> None:
        if not self.launched or dist.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def stop(self) -> None:
        if self.launched and dist.is_initialized():
            dist.destroy_process_group()

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        if not self.launched:
            return module
        device_ids = [device] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def sync_batch_norms(self, module: nn.Module, device: torch.device) -> nn.Module:
        if self.launched and self.world_size > 1 and device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return module

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether any process raised `flag`: all processes must stop at the same step."""
        if not self.launched:
            return flag
        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())
