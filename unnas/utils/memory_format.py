"""Whether to run a model in channels-last memory format."""
from __future__ import annotations

import torch


def use_channels_last(requested: bool, amp: str, device: torch.device) -> bool:
    """``requested`` unless bf16 autocast on a CPU: there oneDNN's bf16 channels-last dilated
    depthwise weight gradient returns non-finite values at random (torch 2.14), so such runs stay
    NCHW. Channels-last never changes values, only speed."""
    return bool(requested) and not (amp == "bf16" and device.type == "cpu")
