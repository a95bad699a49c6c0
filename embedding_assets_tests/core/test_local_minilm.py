"""The embedded default model: real all-MiniLM-L6-v2 int8 ONNX, offline."""

import numpy as np

from embedding_assets.core.embedders import Embedder, make_embedder


def test_vectors_are_unit_length_and_384_wide(minilm: Embedder) -> None:
    vectors = minilm.embed(["The cat sat on the mat.", "Stock markets fell sharply today."])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_similar_meanings_are_closer_than_unrelated_ones(minilm: Embedder) -> None:
    a, b, c = minilm.embed(
        [
            "How do I raise an exception in Python?",
            "Throwing an error in a Python program",
            "Recipe for a chocolate cake",
        ]
    )
    assert a @ b > 0.5 > a @ c + 0.3


def test_batching_and_order_do_not_change_vectors(minilm: Embedder) -> None:
    texts = [f"Sentence number {i} about {'loops' if i % 2 else 'functions'}." + " pad" * (i * 7) for i in range(20)]
    together = minilm.embed(texts)
    alone = np.vstack([minilm.embed([t]) for t in reversed(texts)])[::-1]
    assert np.min(np.sum(together * alone, axis=1)) > 0.995  # int8 activations scale per batch


def test_tokens_are_counted_without_special_tokens(minilm: Embedder) -> None:
    assert minilm.count_tokens(["hello world", ""]) == [2, 0]
    assert minilm.model_version == "local:all-MiniLM-L6-v2-onnx-int8@1.0.0/384d"
    assert minilm.max_input_tokens == 254


def test_the_thread_count_changes_speed_not_vectors(minilm: Embedder) -> None:
    texts = ["A while loop repeats while its condition is true.", "Generators yield values lazily."] * 4
    one = make_embedder("local:all-MiniLM-L6-v2", threads=1)
    assert one.model_version == minilm.model_version
    np.testing.assert_allclose(one.embed(texts), minilm.embed(texts), atol=1e-6)


def test_a_forward_pass_holds_at_most_batch_tokens_unless_one_text_is_longer(minilm: Embedder) -> None:
    long = ["word " * 150 + str(i) for i in range(6)]  # 152 tokens with [CLS] and [SEP]: two would be 304
    short = [f"tiny text {i}" for i in range(6)]
    tight = make_embedder("local:all-MiniLM-L6-v2", batch_tokens=256)
    loose = make_embedder("local:all-MiniLM-L6-v2", batch_tokens=4096)
    vectors = tight.embed(long + short)
    assert tight.retry_stats.requests == 6 + 1  # each long text alone, the six short ones together
    assert np.min(np.sum(loose.embed(long + short) * vectors, axis=1)) > 0.995  # int8 activations scale per batch
    assert loose.retry_stats.requests == 2  # six texts a pass, so that both cores have one
    assert make_embedder("local:all-MiniLM-L6-v2", batch_tokens=10).embed(["word " * 50]).shape == (1, 384)
