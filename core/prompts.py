"""What a job's ``prompt`` / ``prompt_scale`` must satisfy before it is queued (no torch).

A prompt steers generation with the model's aligner (``MMD_MODELS.<name>.aligner``; the
guidance itself is ``model/prompted.py``). :func:`check_prompt_request` is the one set of
submit-time rules, used by the gateway (``422``) and by ``mmd generate``:

- a prompt needs a model with an aligner (``prompt_unsupported``, naming the setting);
- it is not empty (after stripping) and at most ``MMD_PROMPT_MAX_CHARS`` characters;
- an aligner with a closed vocabulary (:data:`PROMPT_VOCABULARY`: the demo world's colour
  names) takes only its words, case and surrounding spaces ignored (``unknown_prompt``);
- ``prompt_scale`` (None = the aligner's default) is in ``[0, MMD_PROMPT_SCALE_MAX]`` and is
  only sent with a prompt;
- a ``duration_s`` job (several model windows, ``model/whole_clip.py``) takes a prompt on the
  fast samplers only: the official DDPM loop runs its windows one by one without prompt
  guidance (:data:`NO_PROMPT_WITH_DDPM_WINDOWS`).

The worker still runs the aligner's own ``check_prompt`` (``model.pipeline.validate``), so a
prompt the aligner refuses fails the job with ``invalid_request`` and the aligner's message.
:data:`PROMPT_VOCABULARY` mirrors the model's list (the gateway may not import the model);
``tests/core/test_prompts.py`` holds the two equal.
"""

from __future__ import annotations

# aligner kind -> the only prompts it takes (lower case); kinds not listed take free text.
# "demo": model.demo.world.COLOUR_NAMES (the demo aligner classifies colour and pitch).
PROMPT_VOCABULARY: dict[str, tuple[str, ...]] = {"demo": ("red", "green", "blue")}

NO_PROMPT_WITH_DDPM_WINDOWS = (
    "a prompt with duration_s needs a fast sampler (ddim, dpm_solver, dpm_solver++): the official "
    "DDPM loop (preset official, or sampler.name ddpm) runs whole clips window by window without "
    "prompt guidance; send preset fast, another sampler.name, or no prompt")

# 422 codes of the prompt rules besides invalid_request
PROMPT_ERROR_CODES: dict[str, str] = {
    "prompt_unsupported": "the chosen model has no prompt aligner (MMD_MODELS.<name>.aligner)",
    "unknown_prompt": "the model's aligner knows a fixed set of prompts and this is not one",
}


class PromptRefused(ValueError):
    """A prompt rule broken: ``code`` (``invalid_request`` or :data:`PROMPT_ERROR_CODES`),
    ``field`` (``prompt``, ``prompt_scale`` or ``duration_s``) and the message (what to do)."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message


def check_prompt_request(prompt: str | None, prompt_scale: float | None, *, model: str,
                         aligner: str | None, max_chars: int, scale_max: float,
                         duration_s: float | None = None,
                         sampler: str | None = None) -> str | None:
    """Apply the rules above to a request for ``model`` (whose aligner kind is ``aligner``,
    None = it has none) whose resolved base sampler is named ``sampler``; returns the prompt
    stripped (None without one). Raises :class:`PromptRefused`."""
    if prompt is None:
        if prompt_scale is not None:
            raise PromptRefused("invalid_request", "prompt_scale",
                                "prompt_scale is only used with a prompt; send a prompt or "
                                "leave prompt_scale out")
        return None
    if aligner is None:
        raise PromptRefused("prompt_unsupported", "prompt",
                            f"model {model!r} takes no prompt: it has no prompt aligner "
                            f"(MMD_MODELS.{model}.aligner); leave the prompt out, choose a model "
                            "with an aligner, or configure one for it")
    text = prompt.strip()
    if not text:
        raise PromptRefused("invalid_request", "prompt",
                            "prompt is empty; send some text or leave prompt out for unguided "
                            "generation")
    if len(text) > max_chars:
        raise PromptRefused("invalid_request", "prompt",
                            f"prompt has {len(text)} characters, more than the limit {max_chars} "
                            "(MMD_PROMPT_MAX_CHARS); send a shorter one")
    vocabulary = PROMPT_VOCABULARY.get(aligner)
    if vocabulary is not None and text.lower() not in vocabulary:
        raise PromptRefused("unknown_prompt", "prompt",
                            f"prompt {text!r} is not one the {aligner} aligner of model {model!r} "
                            f"knows; it takes one of: {', '.join(vocabulary)}")
    if prompt_scale is not None and not 0 <= prompt_scale <= scale_max:
        raise PromptRefused("invalid_request", "prompt_scale",
                            f"prompt_scale={prompt_scale:g} is outside [0, {scale_max:g}] "
                            "(MMD_PROMPT_SCALE_MAX); leave it out for the aligner's default")
    if duration_s is not None and sampler == "ddpm":
        raise PromptRefused("invalid_request", "duration_s", NO_PROMPT_WITH_DDPM_WINDOWS)
    return text
