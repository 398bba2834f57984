"""Live avatars: a webcam, a looped video or a stream drives still portraits in real time.

`run_live` wires a camera, an avatar model and outputs (preview page, virtual
camera, recordings) into a `LiveSession`; `serve_worker` and `RemoteAvatars`
put the model on another machine.
"""

from fakelab.live.api import LiveSummary, load_avatars, prepare_sources, run_live, serve_worker
from fakelab.live.avatars import AvatarModel, FommAvatars, LandmarkWarpAvatars, PreparedAvatar, build_avatar_model
from fakelab.live.capture import FileCamera, open_camera
from fakelab.live.session import ACTIONS, LiveSession

__all__ = [
    "ACTIONS",
    "AvatarModel",
    "FileCamera",
    "FommAvatars",
    "LandmarkWarpAvatars",
    "LiveSession",
    "LiveSummary",
    "PreparedAvatar",
    "build_avatar_model",
    "load_avatars",
    "open_camera",
    "prepare_sources",
    "run_live",
    "serve_worker",
]
