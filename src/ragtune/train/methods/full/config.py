from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FullOptions:
    """Every weight trains; nothing to choose (the learning rate is the general option)."""


def full_config(options: FullOptions, base_path: str):
    return None  # no peft wrapper: the Trainer updates the whole model
