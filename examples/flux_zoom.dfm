# flux_zoom.dfm: 6 seconds of 2D zoom into a coastline with Flux.1 [schnell].
#
# The model's family sets what the scene leaves out: `dfm check` notes Flux.1 [schnell]'s defaults
# (4 steps, cfg_scale 0, the flow_euler sampler; 1024x1024 without `size`, 512x512 here for a quick
# preview, each side a multiple of 16: the VAE's 8 times the 2x2 patches). Schnell
# runs without guidance, so there is no negative prompt and no cfg_scale to set, and T5 reads the
# prompt as written: describe the picture in sentences rather than weights like `(word:1.2)`.
dfm 1

mode    2d
size    512x512
fps     15
frames  90
model   "black-forest-labs/FLUX.1-schnell"
seed    7 iter
cadence 2  # diffuse every second frame, blend the ones between
border  replicate

prompt 0  "A rugged coastline at golden hour, waves breaking on dark rocks, a lighthouse on the cliff"
prompt 3s "A fishing village on the cliffs above the sea at dusk, warm lights in the windows"

# With 4 steps, Deforum's int((1 - strength) x steps) runs 2 steps per frame at strength 0.5.
zoom     0:(1.01 + 0.005*sin(2*pi*t/fps/3))
angle    0:(0), 3s:(0.5) ease_in_out
strength 0:(0.5)
noise    0:(0.02)
