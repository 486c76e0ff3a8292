# stills.dfm: no animation, just images. Mode `none` renders each prompt on its own,
# from noise, `images_per_prompt` times: a quick way to audition prompts and seeds.
dfm 1

mode              none
size              512x512
model             "stable-diffusion-v1-5/stable-diffusion-v1-5"
sampler           dpmpp_2m_karras  # Deforum's "DPM++ 2M Karras" is accepted too
steps             30
cfg_scale         7
images_per_prompt 4

# The seed advances once per image. With `iter` the four images of a prompt get seeds
# 1234, 1235, 1236, 1237, then the next prompt goes on from 1238. Write `seed 1234 fixed`
# to render every image with the same seed (the same composition, only the prompt changes),
# or `seed 1234 random` for seeds drawn from 1234: random-looking, but the same on every run.
seed 1234 iter

# In this mode a prompt's key only orders the prompts.
prompt 0 "a lighthouse on a cliff at dusk, oil painting"
prompt 1 "a lighthouse on a cliff at dusk, watercolor"
prompt 2 """a lighthouse on a cliff at dusk,
pencil sketch, cross-hatching"""  # a triple-quoted prompt: dedented, newlines kept

# ` --neg ` inside a prompt splits off its negative part (Deforum's convention) ...
prompt   3 "a lighthouse in a storm, dramatic light --neg people, boats"
# ... and `negative` sets the negative prompt for every prompt from its frame on.
negative "blurry, low quality, watermark"
