# flythrough_3d.dfm: a 3D camera flying forward through a canyon, turning as it goes.
#
# In 3D mode each frame is warped by a depth map of the previous one, so near things move
# faster than far ones. translation_* move the camera, rotation_3d_* turn it (per frame).
dfm 1

mode            3d
size            512x512
fps             15
duration        12s  # 180 frames
sampler         euler_a
steps           30
cfg_scale       7
seed            7 iter
cadence         3
color_coherence lab

# depth
use_depth_warping on
depth_model       "Intel/dpt-hybrid-midas"
midas_weight      0.3     # blend the depth map with a flat plane a little
padding_mode      border  # how pixels from outside the view are filled
sampling_mode     bicubic
fov               0:(40), 6s:(60) ease_in_out, 10s:(40)  # widen the lens mid-flight
near              200
far               10000

prompt   0  "a narrow red sandstone canyon, morning light, photorealistic"
prompt   8s "a canyon opening onto a wide desert, golden hour, photorealistic"
negative "blurry, text, watermark"

translation_z 0:(2), 2s:(6) ease_in, 10s:(3)  # accelerate, cruise, slow down
translation_x 0:(0), 4s:(-1) ease_in_out, 7s:(1) ease_in_out, 10s:(0)
rotation_3d_y 0:(0), 4s:(-0.6) ease_in_out, 7s:(0.6) ease_in_out, 10s:(0)
rotation_3d_z 0.15*sin(2*pi*t/90)  # a gentle roll: a constant expression, no keys
rotation_3d_x 0
strength      0:(0.6)
noise         0:(0.025)
