# demo.dfm: 4 seconds of 2D motion with a few-step model, what `make demo` (`dfm demo`) renders.
#
# SD-Turbo renders a frame in one UNet call: its family's defaults (512x512, cfg_scale 0, 4 steps,
# the euler_a_trailing sampler) come from the model, so `dfm check` notes them (DFM207) and the
# scene sets none. At strength 0.65 each img2img frame runs int((1 - 0.65) × 4) = 1 step.
dfm 1

mode            2d
fps             12
duration        4s
model           "stabilityai/sd-turbo"
seed            7 iter
cadence         2  # diffuse every other frame, blend the ones between
border          replicate
color_coherence lab

prompt   0  "a lighthouse on a cliff above a stormy sea, oil painting"
prompt   2s "a lighthouse on a cliff under a starry night sky, oil painting"
negative "blurry, low quality"

zoom          0:(1.02)
angle         0:(0), 2s:(0.6) ease_in_out, 3.5s:(0)
translation_x 0:(0.5*sin(2*pi*t/48))
strength      0:(0.65)
noise         0:(0.02)
