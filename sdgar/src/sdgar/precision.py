"""Mixed precision for the training losses (issue 7): ``torch.autocast`` on CUDA, bf16 or fp16.

``fp32`` (the default) changes nothing. ``bf16`` runs the loss forward under autocast. ``fp16`` does too and scales
the loss with a ``GradScaler`` so that small gradients do not flush to zero; a step whose gradients overflow is
skipped and the scale lowered. Parameters and optimizer states stay fp32; evaluation and the SD-GAR generator
update stay fp32. CPU autocast exists in torch but is slower than fp32 for these small matmuls, so a non-CUDA
device with bf16/fp16 is refused rather than silently ignored.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from neurips20_common import UserError

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class MixedPrecision:
    def __init__(self, mode: str = "fp32", device: torch.device | str = "cpu") -> None:
        if mode not in PRECISIONS:
            raise UserError(f"unknown precision {mode!r}; use one of {', '.join(PRECISIONS)}")
        device = torch.device(device)
        if mode != "fp32" and device.type != "cuda":
            raise UserError(f"precision {mode} needs a CUDA device (mixed precision is CUDA-only here), but the "
                            f"device is {device}; use --precision fp32 or --device cuda")
        self.mode, self.dtype = mode, PRECISIONS[mode]
        self.scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for the forward pass that computes a loss."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """zero_grad, backward and optimizer step, through the GradScaler for fp16."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "scaler": self.scaler.state_dict() if self.scaler is not None else {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("mode", "fp32") != self.mode:
            raise UserError(f"the checkpoint was trained with precision {state.get('mode')}, not {self.mode}; "
                            "resume with the same precision")
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
