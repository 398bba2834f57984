"""The pretrained face models: found in installed packages, loaded once per process.

dlib's detectors, shape predictor and recognition network come from `dlib-bin`
and `face-recognition-models`; OpenCV ships its Haar cascade. Nothing is downloaded.

The detectors and the recognition network keep scratch state inside (dlib's docs:
use one copy per thread), and two threads running one of them at once corrupt
memory, so each thread gets its own; the shape predictor is safe to share.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path

from fakelab.errors import ConfigError

FACE_MODELS_PACKAGE = "face-recognition-models"
INSTALL_HINT = 'install the faces extra: pip install "fakelab[faces]"'


def dlib_available() -> bool:
    return importlib.util.find_spec("dlib") is not None


def _dlib():
    if not dlib_available():
        raise ConfigError(f"dlib is not installed; {INSTALL_HINT}")
    import dlib

    return dlib


def face_model_file(name: str) -> Path:
    """Path of a model file shipped by face-recognition-models.

    The package is located without importing it: its __init__ needs pkg_resources,
    which recent setuptools no longer provides.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{FACE_MODELS_PACKAGE} is not installed; {INSTALL_HINT}")
    path = Path(spec.submodule_search_locations[0]) / "models" / name
    if not path.is_file():
        raise ConfigError(f"{FACE_MODELS_PACKAGE} has no {name}; reinstall it")
    return path


def per_thread(factory):
    """`factory()` called once per thread; each thread keeps its own result."""
    local = threading.local()

    @functools.wraps(factory)
    def get():
        model = getattr(local, "model", None)
        if model is None:
            model = local.model = factory()
        return model

    return get


@per_thread
def hog_detector():
    return _dlib().get_frontal_face_detector()


@per_thread
def cnn_detector():
    return _dlib().cnn_face_detection_model_v1(str(face_model_file("mmod_human_face_detector.dat")))


@per_thread
def haar_detector():
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        raise ConfigError("OpenCV's frontal-face Haar cascade could not be loaded")
    return cascade


@functools.cache
def shape_predictor():
    return _dlib().shape_predictor(str(face_model_file("shape_predictor_68_face_landmarks.dat")))


@per_thread
def face_encoder():
    return _dlib().face_recognition_model_v1(
        str(face_model_file("dlib_face_recognition_resnet_model_v1.dat"))
    )
