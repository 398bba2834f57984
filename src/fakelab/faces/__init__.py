"""The face pipeline: detect, follow, crop, paste back; used by animation, detection and metrics.

Models (dlib's HOG and CNN detectors, 68-point landmarks, 128-d embeddings; OpenCV's
Haar cascade) load from installed packages on first use and stay cached.
"""

from fakelab.faces.best_frame import find_best_frame
from fakelab.faces.crop import (
    CropPlan,
    CropResult,
    ImageCrop,
    apply_crop,
    boxes_path,
    crop_frame,
    crop_image,
    crop_video,
    plan_crop,
    plan_video_crop,
    read_boxes,
)
from fakelab.faces.detect import DETECTORS, Box, Detection, detect_faces
from fakelab.faces.landmarks import (
    face_embedding,
    face_landmarks,
    find_faces,
    landmark_box,
    largest_face,
    normalised_landmarks,
)
from fakelab.faces.paste import paste_back
from fakelab.faces.tracking import FaceTrack, FaceTracker, TrackedFace, Tracking, track_faces

__all__ = [
    "DETECTORS",
    "Box",
    "CropPlan",
    "CropResult",
    "Detection",
    "FaceTrack",
    "FaceTracker",
    "ImageCrop",
    "TrackedFace",
    "Tracking",
    "apply_crop",
    "boxes_path",
    "crop_frame",
    "crop_image",
    "crop_video",
    "detect_faces",
    "face_embedding",
    "face_landmarks",
    "find_best_frame",
    "find_faces",
    "landmark_box",
    "largest_face",
    "normalised_landmarks",
    "paste_back",
    "plan_crop",
    "plan_video_crop",
    "read_boxes",
    "track_faces",
]
