"""The active models' list: parsing, per-model settings, and the mistakes it refuses."""

import pytest

from embedding_assets.core.errors import ConfigError
from embedding_assets.core.model_set import MAX_ACTIVE_MODELS, ModelConfig, parse_models
from embedding_assets.core.settings import Settings


def test_each_entry_carries_its_own_settings() -> None:
    live, candidate = parse_models(
        "local:all-MiniLM-L6-v2, openai:text-embedding-3-small?dimensions=512&tokens_per_minute=90000"
        "&run_budget_usd=2.5&price_per_mtok=0.02"
    )
    assert live == ModelConfig("local:all-MiniLM-L6-v2")
    assert candidate == ModelConfig("openai:text-embedding-3-small", 512, 90_000, 2.5, 0.02)
    assert (live.slug, candidate.slug) == ("local_all_minilm_l6_v2", "openai_text_embedding_3_small_512")
    assert parse_models(candidate.entry) == [candidate]  # the entry status prints gives the model back


def test_the_embedders_own_options_stay_in_its_spec() -> None:
    (served,) = parse_models("openai:nano?tokenizer=bert&dimensions=8&max_input_tokens=512")
    assert served.spec == "openai:nano?tokenizer=bert&max_input_tokens=512" and served.dimensions == 8
    assert served.slug == "openai_nano_8" and parse_models(served.entry) == [served]


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        ("", "lists no model"),
        ("toy:hashing,toy:hashing", "the same model twice: toy_hashing"),
        ("toy:hashing?dimensions=eight", "dimensions must be a number"),
        ("toy:hashing?dimensions=0", "dimensions must be positive"),
        ("toy:hashing?run_budget_usd=-1", "run_budget_usd must be positive"),
        ("toy:hashing?dimensions", "toy:hashing?dimensions"),
    ],
)
def test_a_bad_list_fails_with_one_message(listed: str, message: str) -> None:
    with pytest.raises(ConfigError, match="EMBEDDING_ASSETS_MODELS") as error:
        parse_models(listed)
    assert message in str(error.value)


def test_the_active_set_is_capped() -> None:
    listed = ",".join(f"toy:hashing?dimensions={8 * (i + 1)}" for i in range(MAX_ACTIVE_MODELS + 1))
    with pytest.raises(ConfigError, match=f"at most {MAX_ACTIVE_MODELS} are kept fresh"):
        parse_models(listed)
    assert len(parse_models(listed.rsplit(",", 1)[0])) == MAX_ACTIVE_MODELS


def test_one_model_is_the_shorthand_with_the_index_wide_settings() -> None:
    settings = Settings(model="toy:hashing", dimensions=16, run_budget_usd=1.0)
    assert settings.model_configs == [ModelConfig("toy:hashing", 16, None, 1.0, None)]
    assert Settings(models="toy:hashing,local:all-MiniLM-L6-v2").model_configs[1].spec == "local:all-MiniLM-L6-v2"


def test_index_wide_model_settings_and_a_list_conflict() -> None:
    with pytest.raises(ConfigError, match="EMBEDDING_ASSETS_DIMENSIONS and EMBEDDING_ASSETS_MODELS are both set"):
        Settings(models="toy:hashing", dimensions=16)
    with pytest.raises(ConfigError, match=r"MODEL \(one model\) or EMBEDDING_ASSETS_MODELS \(several\), not both"):
        Settings.from_env({"EMBEDDING_ASSETS_MODEL": "toy:hashing", "EMBEDDING_ASSETS_MODELS": "toy:hashing"})
