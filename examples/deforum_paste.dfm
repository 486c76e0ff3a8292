# deforum_paste.dfm: a Deforum setup, pasted.
#
# Deforum's setting names (with or without `_schedule`) are dfm names, and its schedule strings
# work unchanged and give the same per-frame values. Lines marked "Deforum:" are ones that
# Deforum itself would crash on or misread; dfm reads them as Deforum meant.
dfm 1

animation_mode    2D                   # Deforum's name and spelling for `mode 2d`
max_frames        120                  # = frames
size              512x512
fps               15
sampler           euler_ancestral      # = euler_a
steps             25
seed              4242
seed_behavior     ladder               # +2, -1, +2, -1 ...
diffusion_cadence 2                    # = cadence
color_coherence   match_frame_0_lab    # = lab

prompt 0  "a tiny house in a glass bottle, studio lighting, highly detailed"
prompt 60 "a tiny forest in a glass bottle, studio lighting, highly detailed"
negative  "blurry, low quality"

strength_schedule  0: (0.65)
noise_schedule     0: (0.02)
contrast_schedule  0: (1.0)
cfg_scale_schedule 0: (7)
zoom               0:(1.0025+0.002*sin(1.25*3.14*t/30))

# A long schedule split over lines: a line ending in a comma continues on the next one.
angle              0:(0),
                   30:(3),
                   60:(-3),
                   90:(0),             # Deforum: a trailing comma is a crash; dfm ignores it

# An expression key is evaluated on every frame until the next key; number keys interpolate.
translation_x      0:(0), 40:(10*sin(2*3.14*t/40)), 100:(0)

# Deforum: the notebook keeps commas inside where(...), the A1111 extension splits on them and crashes.
translation_y      0:(where(t>5, 1, 0))

# Deforum: a space after '(' is an IndentationError there; here it is just a space.
transform_center_x 0:( 0.5)

# `1e-3` counts as an expression (as in Deforum), so this holds 0.001 up to frame 59 and then
# jumps to 0.02 at frame 60: a step, not a ramp.
amount_schedule    0:(1e-3), 60:(0.02)
