"""fakelab: make, detect and stress-test image-animation deepfakes.

`fakelab.animate(...)` is the main entry point; it is imported on first use so that
`import fakelab` stays light.
"""

__version__ = "0.1.0"


def __getattr__(name):
    if name == "animate":
        from fakelab.animation.api import animate

        return animate
    raise AttributeError(f"module 'fakelab' has no attribute {name!r}")
