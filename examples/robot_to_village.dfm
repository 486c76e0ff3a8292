# robot_to_village.dfm: 10 seconds of 2D zoom with a slow turn through three scenes.
#
# The scene from the design sketch. Frame 0 is diffused from noise; every later frame is the
# previous one, warped by this frame's motion values and diffused again at `strength`.
dfm 1

mode            2d
size            512x512
fps             30
frames          300  # or: duration 10s
model           "stable-diffusion-v1-5/stable-diffusion-v1-5"
sampler         euler_a
steps           50
cfg_scale       7.5
seed            42 iter    # +1 per diffused frame
cadence         2          # diffuse frames 0, 2, 4 ... and blend the ones between
border          replicate  # pixels warped in from outside the frame repeat the edge
color_coherence lab        # hold the colours of the first frame, against drift

# Prompts are hard cuts at their frames; the first one also holds before its key.
prompt   0   "A beautiful woman robot android with bright pastel colors"
prompt   100 "A sports car on the beach"
prompt   200 "A village of huts with palm trees"
negative "blurry, low quality"

# Motion is per frame: zoom 1.0025 means 0.25 % closer on every frame.
angle         0:(1), 10:(-3)                        # a Deforum schedule pasted as-is
zoom          0:(1.0025 + 0.002*sin(1.25*pi*t/30))  # an expression key: evaluated on every frame
translation_x 0:(0), 4s:(3) ease_in_out, 8s:(0)     # keys in seconds; eased from 4 s to 8 s
strength      0:(0.65)
noise         0:(0.02)
