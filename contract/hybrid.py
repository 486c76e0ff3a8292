"""Hybrid video and optical flow as the compiler hands them to the runtime (Deforum's hybrid_* and
optical_flow_* keys, in 2D and 3D).

The settings are always in the table (`hybrid_composite`, `hybrid_motion`, … at "none" by default); the eight
schedule columns (`hybrid_comp_alpha`, `hybrid_flow_factor`, `cadence_flow_factor`, …) only when `in_use`, so a
scene without hybrid video has the table it always had. The input video is the scene's `video_init_path`,
its frames selected by `extract_from_frame`, `extract_nth_frame` and `extract_to_frame` as in video mode.

Torch-free: the compiler, the checker and the language server read it.
"""

from __future__ import annotations

from collections.abc import Mapping

FLOW_METHODS = ("dis_medium", "dis_fine", "farneback", "raft")
SCHEDULES = ("hybrid_comp_alpha", "hybrid_comp_mask_blend_alpha", "hybrid_comp_mask_contrast",
             "hybrid_comp_mask_auto_contrast_cutoff_high", "hybrid_comp_mask_auto_contrast_cutoff_low",
             "hybrid_flow_factor", "cadence_flow_factor", "redo_flow_factor")
# torchvision's RAFT-large weights (raft_large(weights=Raft_Large_Weights.C_T_SKHT_V2)): read from the torch
# hub cache ($TORCH_HOME/hub/checkpoints/), never downloaded by a render
RAFT_WEIGHTS_FILE = "raft_large_C_T_SKHT_V2-ff5fadd5.pth"


def uses_video(settings: Mapping[str, object]) -> bool:
    """Whether the frames read the hybrid video: compositing or hybrid motion."""
    return settings.get("hybrid_composite", "none") != "none" or settings.get("hybrid_motion", "none") != "none"


def in_use(settings: Mapping[str, object]) -> bool:
    """Whether anything hybrid or optical-flow is switched on (then the schedule columns are in the table)."""
    return uses_video(settings) or settings.get("optical_flow_cadence", "none") != "none" or \
        settings.get("optical_flow_redo_generation", "none") != "none"


def starts_from_video(settings: Mapping[str, object]) -> bool:
    """Whether frame 0 is img2img from the hybrid video's first frame (Deforum's
    hybrid_use_first_frame_as_init_image): then it runs the init image's steps, as with an `init_image`."""
    return uses_video(settings) and bool(settings.get("hybrid_use_first_frame_as_init_image")) and \
        not settings.get("hybrid_use_init_image")
