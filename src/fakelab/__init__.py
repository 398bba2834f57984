"""fakelab: make, detect and stress-test image-animation deepfakes."""

__version__ = "0.1.0"
