# beat_sync.dfm: motion locked to the music's tempo.
#
# With `bpm` set, times can be written in beats: `8b` is eight beats from the start.
# At 120 bpm a beat is half a second, 7.5 frames at 15 fps, so two beats are 15 frames.
dfm 1

mode            2d
size            512x512
fps             15
bpm             120
duration        32b  # 16 s: 240 frames
sampler         euler_a
steps           25
seed            5 iter
cadence         1
color_coherence hsv

prompt   0   "neon city street at night, synthwave"
prompt   16b "neon city rooftops at night, synthwave, rain"
negative "blurry, low quality"

# A pulse: zoom in for the first 8 frames of every 15 (two beats), out for the rest.
zoom where(t%15 < 8, 1.03, 0.99)

# A kick on every beat: a short spike of angle, decaying over the beat.
angle 3*exp(-((t*bpm/60/fps)%1)*6)

# Drift right for 8 beats, stop dead on beat 8 (a step), then ease back from beat 24.
translation_x 0:(2) step, 8b:(0), 24b:(0) ease_in_out, 31b:(-2)

# Strength follows the phrase: looser on the downbeat of every 4-beat bar.
strength 0.6 + 0.1*(floor(t*bpm/60/fps)%4 != 0)
noise    0:(0.02)
