# prompt_morph.dfm: interpolation mode, a morph between prompts.
#
# Every frame is rendered from the same starting noise with the same seed; only the prompt's
# text embedding moves from one prompt to the next. With `interpolate_key_frames on` the
# prompts sit at their key frames; with it off, `interpolate_x_frames` frames go between each pair.
dfm 1

mode      interpolation
size      512x512
fps       12
frames    73  # the last prompt (6 s = frame 72) + 1
sampler   euler_a
steps     25
cfg_scale 7.5
seed      2024 fixed

interpolate_key_frames on

prompt   0  "a caterpillar on a leaf, macro photograph"
prompt   3s "a chrysalis hanging from a twig, macro photograph"
prompt   6s "a monarch butterfly with open wings, macro photograph"
negative "blurry, deformed"
