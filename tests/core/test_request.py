import pytest

from studio.core.errors import InvalidRequest
from studio.core.request import SCHEMA_VERSION, BranchRef, GenerationRequest, ImageRef, LoraRef, PreviewMode


def test_json_round_trip_is_lossless():
    r = GenerationRequest.create(
        model="/models/x.safetensors",
        prompt='a "red", circle: top\nleft',
        negative_prompt="blur, 🙂",
        steps=7,
        guidance_scale=6.5,
        guidance_rescale=0.3,
        seed=2**32 - 1,
        width=640,
        height=384,
        scheduler="dpm++ 2m karras",
        batch_size=3,
        clip_skip=1,
        preview="x0",
        init_image=ImageRef(path="/a.png", sha256="ab"),
        mask=ImageRef(path="/m.png"),
        strength=0.4,
        loras=(LoraRef(name="style", weight=-0.5),),
        branch=BranchRef(parent_id="run1", step=3),
        plugins={"demo": {"x": [1, 2]}},
    )
    again = GenerationRequest.from_json(r.to_json())
    assert again == r
    assert (again.scheduler, again.schedule_type) == ("DPM++ 2M", "Karras")
    assert again.preview is PreviewMode.X0


def test_frozen():
    r = GenerationRequest.create(prompt="x")
    with pytest.raises(Exception):  # noqa: B017 — any refusal will do
        r.prompt = "y"
    assert r.replace(prompt="y").prompt == "y" and r.prompt == "x"


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(width=500), "multiple of 8"),
        (dict(steps=0), "steps"),
        (dict(guidance_scale=31), "guidance_scale"),
        (dict(scheduler="Heun++"), "unknown scheduler"),
        (dict(seed=-1), "seed"),
        (dict(model=" "), "no model"),
        (dict(mask=ImageRef(path="m.png")), "needs an init image"),
    ],
)
def test_invalid_requests_explain_themselves(fields, words):
    with pytest.raises(InvalidRequest) as err:
        GenerationRequest.create(**fields)
    assert words in str(err.value)


def test_newer_schema_is_refused_clearly():
    data = GenerationRequest.create().to_dict()
    data["schema_version"] = 99
    with pytest.raises(InvalidRequest, match="newer studio"):
        GenerationRequest.from_dict(data)
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        GenerationRequest.from_json("{oops")


def test_older_recipes_with_a_combined_scheduler_name_read_as_sampler_and_schedule_type():
    old = {"schema_version": 3, "prompt": "x", "scheduler": "DPM++ 2M Karras"}
    r = GenerationRequest.from_dict(old)
    assert (r.schema_version, r.scheduler, r.schedule_type) == (SCHEMA_VERSION, "DPM++ 2M", "Karras")
    assert GenerationRequest.from_dict({"schema_version": 3, "scheduler": "Euler a"}).schedule_type == "Automatic"
    assert GenerationRequest.from_json(r.to_json()) == r
    # the two spellings are one request
    assert GenerationRequest.create(scheduler="DPM++ 2M", schedule_type="karras") == GenerationRequest.create(
        scheduler="dpm++ 2m karras"
    )


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (dict(scheduler="Restart"), "closest this studio runs is 'Heun'"),
        (dict(scheduler="dpm_fast"), "closest this studio runs is 'DPM2'"),
        (dict(scheduler="Eulr a"), "closest this studio runs is 'Euler a'"),
        (dict(scheduler="Euler a", schedule_type="Karras"), "closest is DPM2 a with Karras"),
        (dict(schedule_type="Beta"), "schedule type 'Beta' is unknown"),
    ],
)
def test_a_sampler_the_studio_cannot_run_names_the_closest_it_can(fields, words):
    with pytest.raises(InvalidRequest) as err:
        GenerationRequest.create(**fields)
    assert words in str(err.value)
