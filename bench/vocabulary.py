"""Words the benchmarks build synthetic product text from: fixed lists, so every run (and every
machine) generates the same data."""

#: Things, for names and descriptions.
PRODUCTS = [
    "kettle",
    "lamp",
    "chair",
    "garden",
    "drill",
    "novel",
    "puzzle",
    "racket",
    "blender",
    "tent",
    "lantern",
    "desk",
    "monitor",
    "cable",
    "speaker",
    "mug",
    "blanket",
    "shelf",
    "pillow",
    "stove",
    "camera",
    "tripod",
    "bottle",
    "jacket",
]

#: Qualities, mixed with the things in longer descriptions.
QUALITIES = [
    "sturdy",
    "light",
    "warm",
    "quiet",
    "fast",
    "small",
    "large",
    "waterproof",
    "durable",
    "classic",
    "modern",
    "compact",
    "portable",
]
