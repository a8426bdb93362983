"""Realistic plate reads for the simulator: national formats, repeated cars, OCR errors."""
from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Any

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
DIGITS = string.digits

# Pattern letters: L = letter, D = digit, anything else literal.
FORMATS: dict[str, list[str]] = {
    "gb": ["LLDD LLL"],
    "de": ["L-LL DDDD", "LL-L DDD"],
    "fr": ["LL-DDD-LL"],
    "it": ["LLDDDLL"],
    "es": ["DDDD LLL"],
    "nl": ["DD-LLL-D", "L-DDD-LL"],
    "pl": ["LL DDDDD"],
    "us-ca": ["DLLLDDD"],
    "us-tx": ["LLL-DDDD"],
}

# Characters OCR confuses, both ways.
CONFUSIONS = {"O": "0", "0": "O", "I": "1", "1": "I", "B": "8", "8": "B", "S": "5",
              "5": "S", "Z": "2", "2": "Z", "D": "0", "G": "6"}
VEHICLES = [("car", "Toyota", "Corolla"), ("car", "Volkswagen", "Golf"),
            ("car", "Ford", "Focus"), ("suv", "BMW", "X3"), ("truck", "Volvo", "FH"),
            ("van", "Mercedes", "Sprinter"), ("car", "Tesla", "Model 3")]
COLORS = ["white", "black", "silver", "grey", "blue", "red"]


def make_plate(rng: random.Random, region: str | None = None) -> tuple[str, str]:
    region = region or rng.choice(list(FORMATS))
    pattern = rng.choice(FORMATS[region])
    plate = "".join(
        rng.choice(LETTERS) if c == "L" else rng.choice(DIGITS) if c == "D" else c
        for c in pattern
    )
    return plate, region


def misread(rng: random.Random, plate: str) -> str:
    """One OCR-style error: a confused character or a dropped one."""
    positions = [i for i, c in enumerate(plate) if c.isalnum()]
    if not positions:
        return plate
    confusable = [i for i in positions if plate[i] in CONFUSIONS]
    if confusable and rng.random() < 0.7:
        i = rng.choice(confusable)
        return plate[:i] + CONFUSIONS[plate[i]] + plate[i + 1:]
    i = rng.choice(positions)
    return plate[:i] + plate[i + 1:]


@dataclass
class Passage:
    """One vehicle passing a camera: read several times over a few seconds."""

    plate: str
    region: str
    vehicle: tuple[str, str, str]
    color: str
    reads_left: int
    direction: str
    speed_kph: float
    lane: int
    extra: dict[str, Any] = field(default_factory=dict)


class PlateStream:
    """Detections for one camera: mostly new cars, some regulars, each read 1-4 times."""

    def __init__(self, rng: random.Random, home_region: str | None = None) -> None:
        self.rng = rng
        self.home_region = home_region or rng.choice(list(FORMATS))
        self.regulars = [make_plate(rng, self.home_region) for _ in range(5)]
        self.current: Passage | None = None

    def _new_passage(self) -> Passage:
        rng = self.rng
        if rng.random() < 0.15:
            plate, region = rng.choice(self.regulars)
        else:
            region = self.home_region if rng.random() < 0.8 else None  # type: ignore[assignment]
            plate, region = make_plate(rng, region)
        return Passage(
            plate=plate, region=region, vehicle=rng.choice(VEHICLES), color=rng.choice(COLORS),
            reads_left=rng.randint(1, 4), direction=rng.choice(["approaching", "receding"]),
            speed_kph=round(rng.uniform(10, 90), 1), lane=rng.randint(1, 3),
        )

    @property
    def mid_passage(self) -> bool:
        """True while the current vehicle has more reads to come (seconds apart, not minutes)."""
        return self.current is not None and self.current.reads_left > 0

    def next_read(self) -> dict[str, Any]:
        """Keyword arguments for ``EdgeClient.send_detection``."""
        if self.current is None or self.current.reads_left <= 0:
            self.current = self._new_passage()
        p, rng = self.current, self.rng
        p.reads_left -= 1
        confidence = round(rng.uniform(0.80, 0.99), 3)
        read = p.plate
        if rng.random() < 0.2:
            read, confidence = misread(rng, p.plate), round(rng.uniform(0.45, 0.8), 3)
        candidates = sorted(
            {read, p.plate, misread(rng, p.plate)}, key=lambda c: c != read)
        vtype, make, model = p.vehicle
        x, y = rng.randint(0, 1600), rng.randint(300, 900)
        return {
            "plate": read, "confidence": confidence, "region": p.region,
            "candidates": [
                {"plate": c, "confidence": round(confidence * (1 if i == 0 else 0.8 - i / 10), 3)}
                for i, c in enumerate(candidates)
            ],
            "bbox": {"x": x, "y": y, "w": rng.randint(120, 220), "h": rng.randint(30, 60)},
            "vehicle": {"type": vtype, "make": make, "model": model, "color": p.color,
                        "confidence": round(rng.uniform(0.6, 0.95), 2)},
            "direction": p.direction, "speed_kph": p.speed_kph, "lane": p.lane,
        }
