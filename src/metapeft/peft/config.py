"""`PeftConfig`: which PEFT method, at which sites, with which strength."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import yaml

from .registry import ADDITIVE_METHODS, METHODS, POSITIONS, get_method  # noqa: F401  (re-exported)


@dataclass
class PeftConfig:
    """Typed PEFT configuration (round-trips to YAML/dict).

    Additive methods (LoRA, AdaptFormer, Adapter) put one module at every
    (block, position) site and scale its output by ``alpha · γ``.
    """

    method: str = field(default="lora", metadata={"help": "one of " + ", ".join(METHODS)})
    positions: list[str] | None = field(
        default=None, metadata={"help": "sites inside a block; None = all positions of the method"})
    blocks: Any = field(default="all", metadata={"help": "'all', a list of block indices, or 'last:N'"})
    rank: int = field(default=4, metadata={"help": "LoRA rank r"})
    alpha: float | None = field(
        default=None, metadata={"help": "LoRA: scale = alpha/rank (None: alpha = rank, scale 1); "
                                        "Adapter/AdaptFormer: the output scale (None: 1.0)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input"})
    bottleneck: int = field(default=8, metadata={"help": "Adapter/AdaptFormer bottleneck width"})
    gamma: bool = field(default=True, metadata={"help": "attach a γ modulator to every additive site"})
    gamma_init: float = field(default=1.0, metadata={"help": "initial γ"})
    gamma_shape: str = field(default="scalar", metadata={"help": "'scalar' per site or 'channel'"})
    gamma_constraint: str = field(default="none", metadata={"help": "none | clamp | softplus"})
    gamma_max: float | None = field(default=None, metadata={"help": "bound |γ| <= this after every meta step "
                                                                   "(None: unbounded)"})
    vpt_length: int = field(default=10, metadata={"help": "VPT prompt tokens per prompted block"})
    train_head: bool = field(default=True, metadata={"help": "train the classifier head"})

    def __post_init__(self) -> None:
        get_method(self.method)  # raises on an unknown method, naming the registered ones
        if self.positions is not None:
            if isinstance(self.positions, str):
                self.positions = [p.strip() for p in self.positions.split(",") if p.strip()]
            self.positions = list(self.positions)
            allowed = POSITIONS.get(self.method, ())
            bad = [p for p in self.positions if p not in allowed]
            if bad:
                hint = f"positions of {self.method}: {', '.join(allowed)}" if allowed else \
                    f"{self.method} has no positions"
                raise ValueError(f"peft.positions: unknown position(s) {bad}; {hint}")
            if not self.positions:
                raise ValueError("peft.positions: empty list; use None for all positions")
        if self.rank < 1:
            raise ValueError(f"peft.rank must be >= 1, got {self.rank}")
        if self.bottleneck < 1:
            raise ValueError(f"peft.bottleneck must be >= 1, got {self.bottleneck}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"peft.dropout must be in [0, 1), got {self.dropout}")
        if self.vpt_length < 1:
            raise ValueError(f"peft.vpt_length must be >= 1, got {self.vpt_length}")
        if self.gamma_shape not in ("scalar", "channel"):
            raise ValueError(f"peft.gamma_shape must be 'scalar' or 'channel', got {self.gamma_shape!r}")
        if self.gamma_constraint not in ("none", "clamp", "softplus"):
            raise ValueError(f"peft.gamma_constraint must be none|clamp|softplus, got {self.gamma_constraint!r}")
        if self.gamma_constraint == "softplus" and self.gamma_init <= 0:
            raise ValueError("peft.gamma_init must be > 0 with gamma_constraint=softplus")
        if self.gamma_max is not None and not 0 < abs(self.gamma_init) <= self.gamma_max:
            raise ValueError(f"peft.gamma_max must be > 0 and >= |gamma_init|, got {self.gamma_max}")
        if isinstance(self.blocks, str) and self.blocks != "all" and not self.blocks.startswith("last:"):
            try:
                self.blocks = [int(b) for b in self.blocks.split(",") if b.strip()]
            except ValueError:
                raise ValueError(f"peft.blocks: expected 'all', 'last:N' or a list of ints, got {self.blocks!r}")

    @property
    def resolved_positions(self) -> tuple[str, ...]:
        if self.positions is not None:
            return tuple(self.positions)
        return POSITIONS.get(self.method, ())

    @property
    def scale(self) -> float:
        """The fixed α applied to every additive module's output (before γ): the method's scale rule."""
        return get_method(self.method).scale(self)

    @property
    def has_gamma(self) -> bool:
        return self.gamma and get_method(self.method).additive

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PeftConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"peft: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> "PeftConfig":
        return cls.from_dict(yaml.safe_load(text) or {})


def resolve_blocks(blocks: Any, depth: int) -> list[int]:
    """Turn 'all' / 'last:N' / list of ints (negative allowed) into sorted block indices."""
    if blocks == "all" or blocks is None:
        return list(range(depth))
    if isinstance(blocks, str) and blocks.startswith("last:"):
        n = int(blocks.split(":", 1)[1])
        if not 1 <= n <= depth:
            raise ValueError(f"peft.blocks: last:{n} outside 1..{depth}")
        return list(range(depth - n, depth))
    if isinstance(blocks, int):
        blocks = [blocks]
    out: set[int] = set()
    for b in blocks:
        idx = int(b) + depth if int(b) < 0 else int(b)
        if not 0 <= idx < depth:
            raise ValueError(f"peft.blocks: block {b} outside 0..{depth - 1}")
        out.add(idx)
    if not out:
        raise ValueError("peft.blocks: empty block list")
    return sorted(out)


