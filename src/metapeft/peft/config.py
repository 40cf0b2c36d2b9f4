"""`PeftConfig`: which PEFT method, at which sites, with which strength."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Union

import yaml

from ..errors import ConfigError
from ..validation import spec, validate_fields
from .gamma_rules import GammaConstraint, GammaShape, gamma_setting_problem
from .registry import ADDITIVE_METHODS, METHODS, POSITIONS, get_method  # noqa: F401  (re-exported)

# The registered methods as a Literal: the one validation home reads the allowed values from it.
MethodName = Literal[METHODS]  # type: ignore[valid-type]
# Which blocks get modules: "all", "last:N" (the N deepest blocks) or block indices (negative from the end).
BlockSpec = Union[str, list[int]]
BLOCKS_HELP = "'all', 'last:N' (N >= 1) or a list of block indices (ints; negative count from the end)"


@dataclass
class PeftConfig:
    """Typed PEFT configuration (round-trips to YAML/dict).

    Additive methods (LoRA, AdaptFormer, Adapter) put one module at every
    (block, position) site and scale its output by ``alpha · γ``.
    """

    method: MethodName = field(default="lora", metadata=spec("one of " + ", ".join(METHODS)))
    positions: list[str] | None = field(
        default=None, metadata=spec("sites inside a block; None = all positions of the method"))
    blocks: BlockSpec = field(default="all", metadata=spec(BLOCKS_HELP))
    rank: int = field(default=4, metadata=spec("LoRA rank r", ge=1))
    alpha: float | None = field(
        default=None, metadata=spec("LoRA: scale = alpha/rank (None: alpha = rank, scale 1); "
                                    "Adapter/AdaptFormer: the output scale (None: 1.0)", gt=0))
    dropout: float = field(default=0.0, metadata=spec("dropout on the LoRA input", ge=0, lt=1))
    bottleneck: int = field(default=8, metadata=spec("Adapter/AdaptFormer bottleneck width", ge=1))
    gamma: bool = field(default=True, metadata=spec("attach a γ modulator to every additive site"))
    gamma_init: float = field(default=1.0, metadata=spec("initial γ"))
    gamma_shape: GammaShape = field(default="scalar", metadata=spec("'scalar' per site or 'channel'"))
    gamma_constraint: GammaConstraint = field(default="none", metadata=spec("none | clamp | softplus"))
    gamma_max: float | None = field(default=None, metadata=spec("bound |γ| <= this after every meta step "
                                                               "(None: unbounded)", gt=0))
    vpt_length: int = field(default=10, metadata=spec("VPT prompt tokens per prompted block", ge=1))
    train_head: bool = field(default=True, metadata=spec("train the classifier head"))

    def __post_init__(self) -> None:
        self.blocks = parse_blocks(self.blocks)
        validate_fields(self, "peft")
        if self.positions is not None:
            allowed = POSITIONS.get(self.method, ())
            bad = [p for p in self.positions if p not in allowed]
            if bad:
                hint = f"positions of {self.method}: {', '.join(allowed)}" if allowed else \
                    f"{self.method} has no positions"
                raise ConfigError(f"peft.positions: unknown position(s) {bad}; {hint}")
        problem = gamma_setting_problem(self.gamma_init, self.gamma_constraint, self.gamma_max)
        if problem:
            raise ConfigError(f"peft.gamma_init = {self.gamma_init}, peft.gamma_constraint = "
                              f"{self.gamma_constraint}, peft.gamma_max = {self.gamma_max}: {problem}")

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
            raise ConfigError(f"peft: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> "PeftConfig":
        return cls.from_dict(yaml.safe_load(text) or {})


def parse_blocks(blocks: Any) -> BlockSpec:
    """The one parser of ``peft.blocks``: 'all' | 'last:N' | list of ints (from a list, an int or "1,2")."""
    def bad() -> ConfigError:
        return ConfigError(f"peft.blocks = {blocks!r}: expected {BLOCKS_HELP}")

    if isinstance(blocks, bool):
        raise bad()
    if isinstance(blocks, int):
        return [blocks]
    if isinstance(blocks, str):
        text = blocks.strip()
        if text == "all":
            return "all"
        if text.startswith("last:"):
            n = text[5:].strip()
            if not n.isdigit() or int(n) < 1:
                raise bad()
            return f"last:{int(n)}"
        items = [b.strip() for b in text.split(",") if b.strip()]
        if not items or not all(b.lstrip("-").isdigit() for b in items):
            raise bad()
        return [int(b) for b in items]
    if isinstance(blocks, (list, tuple)) and blocks and all(isinstance(b, int) and not isinstance(b, bool)
                                                            for b in blocks):
        return list(blocks)
    raise bad()


def resolve_blocks(blocks: Any, depth: int) -> list[int]:
    """Turn 'all' / 'last:N' / list of ints (negative allowed) into sorted block indices."""
    blocks = parse_blocks("all" if blocks is None else blocks)
    if blocks == "all":
        return list(range(depth))
    if isinstance(blocks, str):
        n = int(blocks.split(":", 1)[1])
        if not 1 <= n <= depth:
            raise ConfigError(f"peft.blocks = last:{n}: the model has {depth} blocks, allowed last:1 .. last:{depth}")
        return list(range(depth - n, depth))
    out: set[int] = set()
    for b in blocks:
        idx = b + depth if b < 0 else b
        if not 0 <= idx < depth:
            raise ConfigError(f"peft.blocks: block {b} outside 0..{depth - 1} (or -{depth}..-1) of a "
                              f"{depth}-block model")
        out.add(idx)
    return sorted(out)
