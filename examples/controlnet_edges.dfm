# controlnet_edges.dfm: a 2D zoom whose pictures follow the edges of a video, through a ControlNet.
#
# Unit 1 reads input.mp4 (a 4-second 64x64 test clip next to this file: replace it with your footage),
# finds its edges with Canny and steers every diffused frame by them. Its weight fades out over the
# last two seconds, so the animation drifts free of the footage. `dfm preview` shows the edge images
# next to the camera preview in seconds, before any model is downloaded.
dfm 1

mode    2d
size    512x512
fps     15
frames  60
sampler euler_a
steps   25
seed    7

prompt   "a city of glass at night, neon reflections, cinematic"
negative "blurry, low quality"

zoom     1.01
strength 0.6

cn_1_model        "lllyasviel/control_v11p_sd15_canny"
cn_1_module       canny
cn_1_threshold_a  80  # Canny's low threshold (default 100): more, fainter edges
cn_1_vid_path     "input.mp4"
cn_1_weight       0:(1), 2s:(1), 59:(0) ease_in_out
cn_1_guidance_end 0.8  # let the last fifth of each frame's steps finish the details freely
