# video_restyle.dfm: restyle a video, frame by frame.
#
# Video mode uses the frames of `video_init_path` as the init images: each output frame is
# img2img from one input frame at `strength`, so the video's motion carries the animation.
# There is no camera motion in this mode. Relative paths are relative to this file; the tiny
# input.mp4 next to it is a 4-second 64x64 test clip (60 frames); replace it with your footage.
dfm 1

mode               video
size               512x512
fps                15
frames             60
video_init_path    "input.mp4"
extract_nth_frame  1  # use every input frame (2: every other one)
extract_from_frame 0
sampler            euler_a
steps              30
cfg_scale          7
seed               99 fixed  # one seed for every frame: less flicker between frames

prompt           "an animated film still, watercolor, soft light"
prompt           2s "an animated film still, ink and wash, moonlight"
prompt_crossfade 0.5s  # blend the two prompts over half a second instead of a hard cut
negative         "photo, blurry, low quality"

# How much of the input frame survives: more at the start, then loosen the grip.
strength 0:(0.75), 3s:(0.55) ease_out
