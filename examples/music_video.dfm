# music_video.dfm: motion that follows the music itself.
#
# `audio` makes the track's features per-frame variables: onset (hits), rms (loudness), beat (1 on a
# beat frame), beat_phase (0..1 through the beat), low, mid, high (band energies), each 0..1.
# The track is examples/music_video.mp3 (8 s at 120 bpm, made by examples/make_music_track.py).
dfm 1

mode     2d
size     512x512
fps      15
audio    "music_video.mp3"
bpm      auto  # detected from the track: `dfm check` prints it
duration auto  # the track's length: 8 s, 120 frames
sampler  euler_a
steps    25
seed     7 iter

prompt   0  "neon city street at night, synthwave"
prompt   8b "neon city rooftops at night, synthwave, rain"
negative "blurry, low quality"

# Push in on every hit, sway with the bass, more change on the beat, grain with the hi-hats.
zoom     1 + 0.04*onset
angle    1.5*(low - 0.5)
strength 0.65 - 0.15*beat
noise    0.02 + 0.03*high
