"""Every diagnostic code: a title and an explanation (shown by `dfm explain CODE` and docs/language.md)."""

from __future__ import annotations

CODES: dict[str, tuple[str, str]] = {
    # syntax (dsl/)
    "DFM001": ("syntax error", "The statement does not follow the grammar; the message says what was expected."),
    "DFM002": ("unterminated string", "A string is opened and never closed on its line. Close it, or use "
               "\"\"\"triple quotes\"\"\" for text over several lines."),
    "DFM003": ("unclosed parenthesis", "A '(' is never closed before the statement ends."),
    "DFM011": ("decimal comma", "A number is written with a comma as its decimal separator (`1,04`). In dfm, "
               "as in Deforum, a comma separates keyframes or function arguments; write `1.04`."),
    "DFM012": ("missing comma between keyframes", "Two keyframes follow each other without a comma, or a "
               "keyframe stands on a line of its own: end the previous line with a comma."),
    "DFM013": ("'^' is not an operator", "Powers are written `**` (as in Deforum and Python)."),
    "DFM014": ("keyframe value without parentheses", "A keyframe is `frame:(value)`; the value goes in "
               "parentheses."),
    # statements (compiler/check)
    "DFM020": ("missing or wrong version line", "A scene starts with `dfm 1`, the language version it is "
               "written for."),
    "DFM101": ("unknown parameter", "The statement's name is not a dfm parameter or setting, nor a Deforum "
               "alias of one. The help line suggests the closest name."),
    "DFM102": ("unknown value", "The value is not one of the parameter's choices (sampler, mode, border, "
               "colour coherence, seed behaviour…)."),
    "DFM103": ("wrong type", "The value has the wrong type for the parameter (a string where a number is "
               "needed, a keyframe list for a static setting…)."),
    "DFM104": ("out of range", "A constant value lies outside the parameter's valid range."),
    "DFM105": ("wrong number of values", "The statement has too many or too few values."),
    "DFM106": ("setting given twice", "A static setting appears more than once; the last one would win, "
               "which is rarely what was meant."),
    "DFM107": ("unsupported sampler", "The sampler exists in Deforum or A1111 but has no faithful diffusers "
               "scheduler. dfm does not substitute another one silently; pick one of the listed samplers."),
    "DFM108": ("conflicting settings", "Two settings say the same thing differently (frames and duration), or "
               "disagree: `seed_behavior schedule` without a `seed_schedule` (an error), a `seed_schedule` with "
               "another seed behaviour (a warning: it is ignored, as in Deforum)."),
    "DFM109": ("schedule given twice", "A schedule parameter appears in two statements; merge their keys into "
               "one statement."),
    # expressions
    "DFM201": ("unknown function", "The expression calls a function dfm does not have."),
    "DFM202": ("unknown variable", "The expression uses a name that is not a dfm variable or constant."),
    "DFM203": ("wrong number of arguments", "A function is called with the wrong number of arguments."),
    "DFM204": ("time unit needs a setting", "A time in beats needs `bpm`."),
    "DFM205": ("needs an audio track", "An audio variable (`onset`, `rms`, `beat`, `beat_phase`, `low`, `mid`, "
               "`high`), `bpm auto` or `duration auto` is used in a scene without an `audio` statement."),
    "DFM206": ("detected from the audio", "A note, not a problem: the tempo `bpm auto` detected, or the length "
               "`duration auto` took, from the `audio` track."),
    "DFM207": ("defaults from the model family", "A note, not a problem: the scene's model is of a family "
               "trained for other settings than dfm's defaults (SDXL at 1024x1024; SDXL-Turbo and SD-Turbo at "
               "512x512 with cfg_scale 0, 4 steps and a trailing sampler; LCM with 4 steps and the lcm sampler; "
               "Flux and SD3.5 at 1024x1024 with flow_euler and their own steps and guidance), "
               "and the scene sets none of them, so the family's are used. The note lists them; set any in the "
               "scene to choose your own."),
    # keys
    "DFM301": ("duplicate keyframe", "Two keyframes of one schedule (or two prompts) fall on the same frame. "
               "Deforum silently keeps the last; dfm asks you to remove one."),
    "DFM302": ("keyframes out of order", "Keyframes must be in increasing frame order."),
    "DFM303": ("keyframe past the last frame", "A keyframe lies at or past the frame count, so it never takes "
               "effect (as in Deforum)."),
    "DFM304": ("parameter unused in this mode", "The parameter has no effect in the scene's mode (for example "
               "rotation_3d_x in 2D)."),
    "DFM305": ("no prompt", "The scene has no `prompt` statement, so there is nothing to render."),
    "DFM306": ("unknown curve", "The word after a keyframe names the interpolation of the segment that starts "
               "there: linear, step, ease_in, ease_out, ease_in_out or cubic."),
    "DFM307": ("key not at frame 0", "The first keyframe is after frame 0; its value holds before it (Deforum "
               "would crash here)."),
    "DFM308": ("Deforum keys reordered", "A quoted Deforum schedule (`zoom \"0:(1), 20:(5), 10:(2)\"`) has keys "
               "out of frame order or two keys on one frame. Deforum fills its series by frame, so dfm reads it "
               "the same way: keys sorted by frame, the last of two keys on one frame kept. The warning names "
               "the change; write the keys in order to silence it (dfm's own, unquoted keys must be in order: "
               "DFM302, DFM301)."),
    # per-frame values (compiler/lower)
    "DFM401": ("value out of range at a frame", "A schedule's value leaves the parameter's valid range at some "
               "frame; the message names the first such frame and its value."),
    "DFM402": ("not a number at a frame", "A schedule evaluates to NaN or infinity at some frame (a division "
               "by zero, the log of a negative number…)."),
    "DFM403": ("file not found", "A path in the scene does not exist (relative paths are relative to the scene "
               "file)."),
    "DFM404": ("audio cannot be used", "The `audio` file cannot be decoded (not an audio file, or a format "
               "ffmpeg does not read), holds no audio, starts past its end (`from`), or has no tempo that "
               "`bpm auto` can detect."),
    "DFM405": ("model cannot be rendered", "The scene's `model` is of a family dfm does not render (an "
               "inpainting model, Flux Fill/Redux, Stable Cascade, an SDXL refiner alone) or its file cannot "
               "be read. A warning at check time for the model, since `dfm render --model` may replace it; "
               "the render refuses it."),
    "DFM406": ("a frame runs no steps", "With few steps, Deforum's int((1 - strength) × steps) rounds to 0 for a "
               "strength below 1 (4 steps at strength 0.8 → int(0.8) = 0): the frame keeps the warped previous "
               "frame and is not diffused. The warning names the first such frame and the strength that would run "
               "one step; raise `steps` or lower `strength`."),
    "DFM410": ("finishing cannot run", "Frame interpolation or upscaling cannot run as written: `interpolate rife` "
               "or `film` without `interpolate_weights`, `interpolate_upscaled` without an `upscale_model`, or "
               "`save_video off` (the finishing works on video.mp4)."),
    "DFM409": ("hybrid video cannot be used", "Hybrid video (`hybrid_composite`, `hybrid_motion`) or optical flow "
               "(`optical_flow_cadence`, `optical_flow_redo_generation`) cannot render as written: hybrid video "
               "without `video_init_path` (or `hybrid_use_init_image` without `init_image`), RAFT without its "
               "weights file on this machine, or (a warning) an input video shorter than the scene, optical-flow "
               "cadence at cadence 1, a `video_init_path` that nothing reads."),
    "DFM408": ("value renders otherwise", "A schedule's value is in the range Deforum renders, but does not do what "
               "the parameter's name suggests: a negative contrast inverts the frame, a negative noise adds noise "
               "as strong as its absolute value, a negative unsharp amount does nothing, a negative zoom also turns "
               "the frame half a turn. dfm renders it as Deforum does and says so; the message names the first "
               "frame."),
    "DFM407": ("ControlNet unit cannot be used", "A ControlNet unit (`cn_N_…`) cannot render as written: its "
               "model is of another family than the scene's (an SD 1.5 ControlNet on an SDXL model), an A1111 name "
               "not found in `controlnet_dir`, no control source (neither `cn_N_vid_path` nor "
               "`cn_N_loopback_mode true`), a preprocessor whose weights are not on this machine, or statements "
               "of a unit that has no model (they change nothing). The message names the unit and what to do."),
    # prompt texts (compiler/prompt_syntax)
    "DFM501": ("prompt weight syntax", "A1111's attention syntax in a prompt is off: a `(` or `[` never closed "
               "weighs everything after it (A1111 reads it so, and so does dfm), a `)` or `]` that closes nothing "
               "is encoded as text, a lone backslash is dropped, and a weight that is not a number, `(word:1.2.3)`, is "
               "an error. Write `\\(` for a literal bracket."),
    "DFM502": ("prompt syntax dfm does not implement", "The prompt uses A1111 or Deforum syntax dfm does not "
               "implement yet, such as an extra-network tag other than a LoRA (`<hypernet:name:0.8>`), or "
               "syntax that means nothing where it stands (`AND` in a negative prompt: A1111 has no `AND` "
               "there, the word is encoded as text). Tags are left out of the text (dfm renders without the "
               "network); everything else is encoded as written, characters and all. The warning says which; "
               "rewrite the prompt."),
    "DFM503": ("composable prompt", "A composable prompt or a backtick expression is off: a backtick "
               "expression that is not a dfm expression (or uses an unknown name), more sub-prompts than dfm "
               "renders in one prompt (each is one more UNet pass per step), an `AND` inside a sub-prompt of the "
               "native form (`\"a\" weight 1 and \"b\"`: the `and` between strings joins them), the native form "
               "in a `negative` (A1111 has no `AND` there), or a backtick never closed (then it is text)."),
    "DFM504": ("prompt edit never reached", "A prompt's editing (`[a:b:when]`) or alternation (`[a|b]`) never "
               "switches on some of the frames it is in force: A1111 counts the edit's steps from the first step "
               "a frame runs, and an img2img frame runs only its last `effective_steps` of `steps` "
               "(int((1 - strength) × steps)), so `[a:b:0.5]` at 25 steps (step 12) is never reached by a "
               "frame that runs 8. dfm counts as A1111 does, and says so. Write the `when` as a step within "
               "what runs (`[a:b:3]`), or lower `strength` so that more steps run."),
}


def explain(code: str) -> str | None:
    entry = CODES.get(code.upper())
    if entry is None:
        return None
    title, text = entry
    return f"{code.upper()}: {title}\n\n{text}"
